//! A client for one Talos node: one TLS connection per node, straight to that node's
//! API (no apid proxying through another node), every call bounded by a deadline.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};
use tracing::{debug, instrument};

use super::generated::common::Metadata;
use super::generated::machine::apply_configuration_request::Mode;
use super::generated::machine::machine_service_client::MachineServiceClient;
use super::generated::machine::reset_request::WipeMode as WireWipeMode;
use super::generated::machine::{
    ApplyConfigurationRequest, BootstrapRequest, EtcdLeaveClusterRequest, EtcdMemberListRequest,
    EtcdRemoveMemberByIdRequest, ReadRequest, ResetRequest, UpgradeRequest,
};
use super::tls::{self, ClientIdentity, Credentials};
use crate::error::{ApiErrorKind, Error, Result};

/// The Talos API port.
pub const DEFAULT_PORT: u16 = 50000;
/// Upper bound on a kubeconfig stream, compressed.
const KUBECONFIG_LIMIT: usize = 4 * 1024 * 1024;

/// Deadlines for connecting and for each call; chosen by the caller.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// Apply modes (Talos `ApplyConfigurationRequest.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    Reboot,
    Auto,
    NoReboot,
    Staged,
    Try,
}

impl ApplyMode {
    fn to_wire(self) -> Mode {
        match self {
            ApplyMode::Reboot => Mode::Reboot,
            ApplyMode::Auto => Mode::Auto,
            ApplyMode::NoReboot => Mode::NoReboot,
            ApplyMode::Staged => Mode::Staged,
            ApplyMode::Try => Mode::Try,
        }
    }

    fn from_wire(mode: i32) -> Self {
        match Mode::try_from(mode) {
            Ok(Mode::Auto) => ApplyMode::Auto,
            Ok(Mode::NoReboot) => ApplyMode::NoReboot,
            Ok(Mode::Staged) => ApplyMode::Staged,
            Ok(Mode::Try) => ApplyMode::Try,
            Ok(Mode::Reboot) | Err(_) => ApplyMode::Reboot,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyMode::Reboot => "reboot",
            ApplyMode::Auto => "auto",
            ApplyMode::NoReboot => "no_reboot",
            ApplyMode::Staged => "staged",
            ApplyMode::Try => "try",
        }
    }
}

/// What the node said about an applied configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The mode the node actually used.
    pub mode: ApplyMode,
    pub details: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOutcome {
    Bootstrapped,
    /// etcd was bootstrapped before (by us or anyone): nothing to do.
    AlreadyBootstrapped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub tag: String,
    pub platform_mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub id: String,
    pub state: String,
    pub healthy: bool,
    pub health_unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMemberInfo {
    pub id: u64,
    pub hostname: String,
    pub is_learner: bool,
}

/// What to upgrade a node to (Talos `UpgradeRequest`). `preserve` is always sent as
/// false: on a control plane it would also skip the node's etcd safety checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// The installer image, `factory.talos.dev/installer/<schematic>:v1.13.9`; its tag
    /// is the Talos version the node comes back on.
    pub image: String,
    /// Stage the upgrade for the next reboot instead of rebooting now.
    pub stage: bool,
    /// Skip the etcd checks a control plane makes first (talosctl `--force`): every
    /// member started and healthy, and not a two-member cluster.
    pub force: bool,
}

impl UpgradeOptions {
    /// Upgrade now, with the etcd checks.
    pub fn new(image: impl Into<String>) -> Self {
        UpgradeOptions {
            image: image.into(),
            stage: false,
            force: false,
        }
    }
}

/// The node's acknowledgement: the upgrade runs after the answer (the node reboots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeAck {
    pub ack: String,
    pub actor_id: String,
}

/// Which disks a reset wipes (Talos `ResetRequest.WipeMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMode {
    /// System disk and user disks: the node comes back in maintenance mode.
    All,
    /// The system disk only: the node comes back in maintenance mode.
    SystemDisk,
    /// User disks only: the node keeps its config.
    UserDisks,
}

/// How to reset a node (Talos `ResetRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOptions {
    /// Drain, and on a control plane leave etcd first (refused, and the reset
    /// abandoned, when leaving would break quorum).
    pub graceful: bool,
    /// Reboot after wiping (back to maintenance mode); halt otherwise.
    pub reboot: bool,
    pub mode: WipeMode,
}

impl Default for ResetOptions {
    /// talosctl's defaults: graceful, wipe everything; plus reboot, so the node comes
    /// back in maintenance mode rather than powered off.
    fn default() -> Self {
        ResetOptions {
            graceful: true,
            reboot: true,
            mode: WipeMode::All,
        }
    }
}

/// Whether a node runs without a config (maintenance) or with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    Maintenance,
    Configured,
}

/// A connection to one node.
#[derive(Clone)]
pub struct NodeClient {
    node: String,
    inner: MachineServiceClient<Channel>,
    call_timeout: Duration,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("node", &self.node)
            .finish()
    }
}

/// `host`, `host:port`, `[v6]:port` → host and port (default 50000).
pub fn split_endpoint(endpoint: &str) -> (String, u16) {
    if let Some(rest) = endpoint.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        let port = tail
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PORT);
        return (host.to_string(), port);
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (endpoint.to_string(), DEFAULT_PORT),
        },
        _ => (endpoint.to_string(), DEFAULT_PORT),
    }
}

async fn resolve(call: &'static str, endpoint: &str) -> Result<(String, SocketAddr)> {
    let (host, port) = split_endpoint(endpoint);
    let unreachable = |message: String| Error::Api {
        call,
        node: endpoint.to_string(),
        kind: ApiErrorKind::Unreachable,
        message,
    };
    let mut addresses = tokio::net::lookup_host((host.clone(), port))
        .await
        .map_err(|e| unreachable(format!("cannot resolve `{host}`: {e}")))?;
    let address = addresses
        .next()
        .ok_or_else(|| unreachable(format!("`{host}` has no address")))?;
    Ok((host, address))
}

/// The full cause chain of an error, for messages (no secrets flow through here: these
/// are transport and TLS errors).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// A TLS alert from the node that means it refused our credentials, said plainly; the
/// raw cause still follows in the message. A configured node (apid) requires and
/// verifies a client certificate in the handshake itself, so a missing or foreign one
/// never reaches a call.
fn tls_refusal(text: &str) -> Option<&'static str> {
    let any = |needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    if any(&["CertificateRequired", "certificate required"]) {
        Some(
            "the node refused the TLS handshake because no client certificate was sent: a configured node accepts only mutual TLS with an admin certificate of its cluster",
        )
    } else if any(&[
        "BadCertificate",
        "UnknownCA",
        "bad certificate",
        "unknown ca",
    ]) {
        Some(
            "the node refused the TLS handshake because it does not trust this client certificate: it was not issued by this node's Talos API CA (another cluster's secrets?)",
        )
    } else {
        None
    }
}

fn is_tls_auth_failure(text: &str) -> bool {
    tls_refusal(text).is_some()
}

/// Put the plain explanation of a TLS refusal in front of the raw cause.
fn explain_tls_refusal(message: String) -> String {
    match tls_refusal(&message) {
        Some(plain) if !message.starts_with(plain) => format!("{plain} ({message})"),
        _ => message,
    }
}

/// Map a gRPC status from a call that was sent to the node.
pub(crate) fn status_error(call: &'static str, node: &str, status: &Status) -> Error {
    let mut message = status.message().to_string();
    if let Some(source) = std::error::Error::source(status) {
        let causes = chain(source);
        if !message.contains(&causes) {
            // tonic's "transport error" message is also the head of its cause chain.
            message = if message.is_empty() || causes.starts_with(&message) {
                causes
            } else {
                format!("{message}: {causes}")
            };
        }
    }
    let kind = match status.code() {
        _ if is_tls_auth_failure(&message) => {
            message = explain_tls_refusal(message);
            ApiErrorKind::Unauthenticated
        }
        Code::Unauthenticated | Code::PermissionDenied => ApiErrorKind::Unauthenticated,
        Code::AlreadyExists => ApiErrorKind::AlreadyExists,
        Code::DeadlineExceeded => ApiErrorKind::Timeout,
        Code::InvalidArgument | Code::Unimplemented => ApiErrorKind::Rejected,
        // Talos answers FailedPrecondition while the services a call needs are not up
        // yet (`bootstrap is not available yet`) or while it is about to reboot.
        Code::FailedPrecondition => ApiErrorKind::NotReady,
        Code::NotFound => ApiErrorKind::NotFound,
        // machined returns plain Go errors (etcd's refusals among them) as Unknown: an
        // answer from the node, not a broken connection. Transport failures carry
        // their cause as the status's source.
        Code::Unknown if std::error::Error::source(status).is_none() => ApiErrorKind::Other,
        // The request left us and the connection broke: the node may or may not have
        // acted on it.
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted => {
            ApiErrorKind::ConnectionLost
        }
        _ => ApiErrorKind::Other,
    };
    if message.is_empty() {
        message = format!("{:?}", status.code());
    }
    Error::Api {
        call,
        node: node.to_string(),
        kind,
        message,
    }
}

fn metadata_error(call: &'static str, node: &str, metadata: Option<&Metadata>) -> Result<()> {
    match metadata {
        Some(metadata) if !metadata.error.is_empty() => Err(Error::Api {
            call,
            node: node.to_string(),
            kind: ApiErrorKind::Other,
            message: metadata.error.clone(),
        }),
        _ => Ok(()),
    }
}

impl NodeClient {
    /// Connect to a node (`host[:port]`) with the given credentials. The TCP and TLS
    /// handshakes happen here, bounded by `connect_timeout`.
    #[instrument(skip_all, fields(node = %endpoint, credentials = ?credentials))]
    pub async fn connect(
        endpoint: &str,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Self> {
        const CALL: &str = "connect";
        let (host, address) = resolve(CALL, endpoint).await?;
        let config = Arc::new(tls::client_config(credentials, endpoint)?);
        let server_name = tls::server_name(&host, &address);
        let connector = tower::service_fn(move |_: Uri| {
            let config = config.clone();
            let server_name = server_name.clone();
            async move {
                let tcp = TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        let unreachable = |message: String| Error::Api {
            call: CALL,
            node: endpoint.to_string(),
            kind: if is_tls_auth_failure(&message) {
                ApiErrorKind::Unauthenticated
            } else {
                ApiErrorKind::Unreachable
            },
            message: explain_tls_refusal(message),
        };
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(options.connect_timeout)
            .timeout(options.call_timeout);
        let channel = tokio::time::timeout(
            options.connect_timeout,
            channel.connect_with_connector(connector),
        )
        .await
        .map_err(|_| Error::Api {
            call: CALL,
            node: endpoint.to_string(),
            kind: ApiErrorKind::Timeout,
            message: format!(
                "no connection within {}s",
                options.connect_timeout.as_secs_f32()
            ),
        })?
        .map_err(|e| unreachable(chain(&e)))?;
        debug!("connected");
        Ok(NodeClient {
            node: endpoint.to_string(),
            inner: MachineServiceClient::new(channel),
            call_timeout: options.call_timeout,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.call_timeout);
        request
    }

    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn version(&mut self) -> Result<VersionInfo> {
        const CALL: &str = "Version";
        let response = self
            .inner
            .version(self.request(()))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let message = self.first_message(CALL, response.messages)?;
        metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        Ok(VersionInfo {
            tag: message.version.map(|v| v.tag).unwrap_or_default(),
            platform_mode: message.platform.map(|p| p.mode).unwrap_or_default(),
        })
    }

    /// Send a machine config. The config bytes are never logged.
    #[instrument(skip_all, fields(node = %self.node, mode = mode.as_str()))]
    pub async fn apply_configuration(
        &mut self,
        config: &[u8],
        mode: ApplyMode,
    ) -> Result<ApplyOutcome> {
        const CALL: &str = "ApplyConfiguration";
        let request = ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: mode.to_wire() as i32,
            dry_run: false,
            try_mode_timeout: None,
        };
        let response = self
            .inner
            .apply_configuration(self.request(request))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let message = self.first_message(CALL, response.messages)?;
        metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        Ok(ApplyOutcome {
            mode: ApplyMode::from_wire(message.mode),
            details: message.mode_details,
            warnings: message.warnings,
        })
    }

    /// Bootstrap etcd on this node. `AlreadyExists` from the node is success.
    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn bootstrap(&mut self) -> Result<BootstrapOutcome> {
        const CALL: &str = "Bootstrap";
        let request = BootstrapRequest {
            recover_etcd: false,
            recover_skip_hash_check: false,
        };
        match self.inner.bootstrap(self.request(request)).await {
            Ok(response) => {
                let response = response.into_inner();
                for message in &response.messages {
                    metadata_error(CALL, &self.node, message.metadata.as_ref())?;
                }
                Ok(BootstrapOutcome::Bootstrapped)
            }
            Err(status) if status.code() == Code::AlreadyExists => {
                Ok(BootstrapOutcome::AlreadyBootstrapped)
            }
            Err(status) => Err(status_error(CALL, &self.node, &status)),
        }
    }

    /// The admin kubeconfig: a stream of gzip-compressed tar chunks holding one file.
    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn kubeconfig(&mut self) -> Result<String> {
        const CALL: &str = "Kubeconfig";
        let mut stream = self
            .inner
            .kubeconfig(self.request(()))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| status_error(CALL, &self.node, &s))?;
            metadata_error(CALL, &self.node, chunk.metadata.as_ref())?;
            archive.extend_from_slice(&chunk.bytes);
            if archive.len() > KUBECONFIG_LIMIT {
                return Err(Error::Kubeconfig {
                    node: self.node.clone(),
                    message: format!("stream exceeds {KUBECONFIG_LIMIT} bytes"),
                });
            }
        }
        unpack_kubeconfig(&self.node, &archive)
    }

    /// A file on the node, whole (`talosctl read`): the stream of its bytes, refused
    /// past `limit` bytes.
    #[instrument(skip_all, fields(node = %self.node, path))]
    pub async fn read_file(&mut self, path: &str, limit: usize) -> Result<Vec<u8>> {
        const CALL: &str = "Read";
        let mut stream = self
            .inner
            .read(self.request(ReadRequest { path: path.into() }))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| status_error(CALL, &self.node, &s))?;
            metadata_error(CALL, &self.node, chunk.metadata.as_ref())?;
            bytes.extend_from_slice(&chunk.bytes);
            if bytes.len() > limit {
                return Err(Error::Api {
                    call: CALL,
                    node: self.node.clone(),
                    kind: ApiErrorKind::Other,
                    message: format!("{path} is larger than {limit} bytes"),
                });
            }
        }
        Ok(bytes)
    }

    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn services(&mut self) -> Result<Vec<ServiceStatus>> {
        const CALL: &str = "ServiceList";
        let response = self
            .inner
            .service_list(self.request(()))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let mut services = Vec::new();
        for message in response.messages {
            metadata_error(CALL, &self.node, message.metadata.as_ref())?;
            services.extend(message.services.into_iter().map(|s| {
                let health = s.health.unwrap_or_default();
                ServiceStatus {
                    id: s.id,
                    state: s.state,
                    healthy: health.healthy,
                    health_unknown: health.unknown,
                }
            }));
        }
        Ok(services)
    }

    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn etcd_members(&mut self) -> Result<Vec<EtcdMemberInfo>> {
        const CALL: &str = "EtcdMemberList";
        let response = self
            .inner
            .etcd_member_list(self.request(EtcdMemberListRequest { query_local: false }))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let mut members = Vec::new();
        for message in response.messages {
            metadata_error(CALL, &self.node, message.metadata.as_ref())?;
            members.extend(message.members.into_iter().map(|m| EtcdMemberInfo {
                id: m.id,
                hostname: m.hostname,
                is_learner: m.is_learner,
            }));
        }
        Ok(members)
    }
}

impl NodeClient {
    /// Upgrade the node to the installer image's version. The node answers first, then
    /// reboots (connections reset, then refused) and comes back on the new version;
    /// wait for that with [`NodeClient::version`] on a new connection. A control plane
    /// refuses unless every etcd member is started and healthy (and never in a
    /// two-member cluster), unless `force`.
    #[instrument(skip_all, fields(node = %self.node, image = %options.image))]
    pub async fn upgrade(&mut self, options: &UpgradeOptions) -> Result<UpgradeAck> {
        const CALL: &str = "Upgrade";
        let request = UpgradeRequest {
            image: options.image.clone(),
            preserve: false,
            stage: options.stage,
            force: options.force,
            reboot_mode: 0,
        };
        let response = self
            .inner
            .upgrade(self.request(request))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let message = self.first_message(CALL, response.messages)?;
        metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        Ok(UpgradeAck {
            ack: message.ack,
            actor_id: message.actor_id,
        })
    }

    /// Reset the node; returns the actor id. The reset runs after the answer: a
    /// graceful reset of a control plane leaves etcd first, and if etcd refuses (quorum)
    /// the node stays as it was, still answering. Otherwise it goes down and, with
    /// `reboot`, comes back in maintenance mode (unless only user disks were wiped).
    #[instrument(skip_all, fields(node = %self.node, graceful = options.graceful))]
    pub async fn reset(&mut self, options: &ResetOptions) -> Result<String> {
        const CALL: &str = "Reset";
        let mode = match options.mode {
            WipeMode::All => WireWipeMode::All,
            WipeMode::SystemDisk => WireWipeMode::SystemDisk,
            WipeMode::UserDisks => WireWipeMode::UserDisks,
        };
        let request = ResetRequest {
            graceful: options.graceful,
            reboot: options.reboot,
            system_partitions_to_wipe: Vec::new(),
            user_disks_to_wipe: Vec::new(),
            mode: mode as i32,
        };
        let response = self
            .inner
            .reset(self.request(request))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        let message = self.first_message(CALL, response.messages)?;
        metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        Ok(message.actor_id)
    }

    /// Take this control plane out of etcd (its etcd stops and its data is removed).
    /// Refused when the remaining members would not keep quorum.
    #[instrument(skip_all, fields(node = %self.node))]
    pub async fn etcd_leave_cluster(&mut self) -> Result<()> {
        const CALL: &str = "EtcdLeaveCluster";
        let response = self
            .inner
            .etcd_leave_cluster(self.request(EtcdLeaveClusterRequest {}))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        for message in &response.messages {
            metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        }
        Ok(())
    }

    /// Remove an etcd member by id (see [`NodeClient::etcd_members`]), asked of this
    /// control plane: how a member whose node is gone for good is cleaned up. An
    /// unknown id is [`ApiErrorKind::NotFound`]; removing a member whose loss would
    /// break quorum is refused.
    #[instrument(skip_all, fields(node = %self.node, member = %format!("{member_id:016x}")))]
    pub async fn etcd_remove_member(&mut self, member_id: u64) -> Result<()> {
        const CALL: &str = "EtcdRemoveMemberByID";
        let response = self
            .inner
            .etcd_remove_member_by_id(self.request(EtcdRemoveMemberByIdRequest { member_id }))
            .await
            .map_err(|s| status_error(CALL, &self.node, &s))?
            .into_inner();
        for message in &response.messages {
            metadata_error(CALL, &self.node, message.metadata.as_ref())?;
        }
        Ok(())
    }

    /// The first message of a reply (Talos replies carry one per node answering).
    fn first_message<M>(&self, call: &'static str, messages: Vec<M>) -> Result<M> {
        messages.into_iter().next().ok_or_else(|| Error::Api {
            call,
            node: self.node.clone(),
            kind: ApiErrorKind::Other,
            message: "empty response".into(),
        })
    }
}

/// Gunzip and untar the Kubeconfig stream; the archive holds a file named `kubeconfig`.
pub fn unpack_kubeconfig(node: &str, archive: &[u8]) -> Result<String> {
    let error = |message: String| Error::Kubeconfig {
        node: node.to_string(),
        message,
    };
    let decoder = flate2::read::GzDecoder::new(archive);
    let mut tar = tar::Archive::new(decoder);
    let entries = tar
        .entries()
        .map_err(|e| error(format!("not a gzip tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| error(format!("broken tar stream: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| error(format!("bad tar entry name: {e}")))?
            .into_owned();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if path.file_name().and_then(|n| n.to_str()) == Some("kubeconfig") {
            let mut text = String::new();
            entry
                .by_ref()
                .take(KUBECONFIG_LIMIT as u64)
                .read_to_string(&mut text)
                .map_err(|e| error(format!("kubeconfig is not UTF-8 text: {e}")))?;
            return Ok(text);
        }
    }
    Err(error("the archive has no `kubeconfig` file".into()))
}

/// Find out whether a node is in maintenance mode or configured, before choosing how to
/// talk to it: mTLS with our admin certificate first (configured nodes), then an
/// insecure connection (maintenance mode serves a self-signed certificate and no client
/// authentication).
#[instrument(skip_all, fields(node = %endpoint))]
pub async fn detect_mode(
    endpoint: &str,
    identity: Option<&ClientIdentity>,
    options: &ConnectOptions,
) -> Result<NodeMode> {
    detect(endpoint, identity, options)
        .await
        .map(|(mode, _)| mode)
}

/// [`detect_mode`], with the version the node answered.
pub async fn detect(
    endpoint: &str,
    identity: Option<&ClientIdentity>,
    options: &ConnectOptions,
) -> Result<(NodeMode, VersionInfo)> {
    let mut mutual_error = None;
    if let Some(identity) = identity {
        let attempt = async {
            let mut client =
                NodeClient::connect(endpoint, &Credentials::Mutual(identity.clone()), options)
                    .await?;
            client.version().await
        };
        match attempt.await {
            Ok(version) => return Ok((NodeMode::Configured, version)),
            Err(error) => {
                if matches!(
                    error.api_kind(),
                    Some(ApiErrorKind::Unreachable | ApiErrorKind::Timeout)
                ) && !error.to_string().contains("certificate")
                {
                    return Err(error);
                }
                debug!(%error, "mutual TLS failed; trying maintenance mode");
                mutual_error = Some(error);
            }
        }
    }
    // A configured node refuses a connection without a client certificate in the TLS
    // handshake: with TLS 1.3 that surfaces at connect or at the first call.
    let attempt = async {
        let mut client = NodeClient::connect(endpoint, &Credentials::Insecure, options).await?;
        client.version().await
    };
    match attempt.await {
        Ok(version) => Ok((NodeMode::Maintenance, version)),
        Err(error) if error.api_kind() == Some(ApiErrorKind::Unauthenticated) => Err(Error::Api {
            call: "Version",
            node: endpoint.to_string(),
            kind: ApiErrorKind::Unauthenticated,
            message: format!(
                "the node is configured but does not accept this cluster's admin certificate{}; is it part of another cluster?",
                mutual_error.map(|e| format!(" ({e})")).unwrap_or_default()
            ),
        }),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(split_endpoint("10.0.0.11"), ("10.0.0.11".into(), 50000));
        assert_eq!(
            split_endpoint("10.0.0.11:50001"),
            ("10.0.0.11".into(), 50001)
        );
        assert_eq!(split_endpoint("[fd00::1]:5"), ("fd00::1".into(), 5));
        assert_eq!(split_endpoint("fd00::1"), ("fd00::1".into(), 50000));
        assert_eq!(split_endpoint("node-1"), ("node-1".into(), 50000));
    }

    /// An error whose cause is another error, as tonic's transport errors are.
    #[derive(Debug)]
    struct Layered(&'static str, Option<Box<Layered>>);

    impl std::fmt::Display for Layered {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layered {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_status_message_repeated_by_its_causes_is_said_once() {
        let cause = Layered(
            "transport error",
            Some(Box::new(Layered("connection error: peer closed", None))),
        );
        let status = Status::from_error(Box::new(cause));
        let error = status_error("ApplyConfiguration", "n", &status).to_string();
        assert!(
            error.contains("transport error: connection error: peer closed"),
            "{error}"
        );
        assert_eq!(error.matches("transport error").count(), 1, "{error}");
    }

    #[test]
    fn statuses_map_to_truthful_kinds() {
        let kind = |status: Status| status_error("X", "n", &status).api_kind().unwrap();
        assert_eq!(
            kind(Status::already_exists("etcd")),
            ApiErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(Status::unavailable("reset")),
            ApiErrorKind::ConnectionLost
        );
        assert_eq!(
            kind(Status::unauthenticated("no")),
            ApiErrorKind::Unauthenticated
        );
        assert_eq!(
            kind(Status::unknown("received fatal alert: CertificateRequired")),
            ApiErrorKind::Unauthenticated
        );
        assert_eq!(
            kind(Status::unknown(
                "failed to leave cluster: etcdserver: re-configuration failed due to not enough started members"
            )),
            ApiErrorKind::Other
        );
        let transport = Status::from_error(Box::new(Layered("transport error", None)));
        assert_eq!(kind(transport), ApiErrorKind::ConnectionLost);
        assert_eq!(
            kind(Status::failed_precondition(
                "bootstrap is not available yet"
            )),
            ApiErrorKind::NotReady
        );
        assert_eq!(
            kind(Status::invalid_argument(
                "this config change can't be applied in immediate mode"
            )),
            ApiErrorKind::Rejected
        );
        assert_eq!(
            kind(Status::not_found("etcdserver: member not found")),
            ApiErrorKind::NotFound
        );
        assert_eq!(
            kind(Status::deadline_exceeded("slow")),
            ApiErrorKind::Timeout
        );
    }

    #[test]
    fn tls_refusals_are_said_plainly() {
        let error = status_error(
            "Version",
            "n",
            &Status::unknown("transport error: received fatal alert: CertificateRequired"),
        )
        .to_string();
        assert!(error.contains("no client certificate was sent"), "{error}");
        assert!(error.contains("CertificateRequired"), "{error}");
        let error = status_error("Version", "n", &Status::unknown("alert: UnknownCA")).to_string();
        assert!(
            error.contains("does not trust this client certificate"),
            "{error}"
        );
    }

    #[test]
    fn kubeconfig_archives_unpack_and_garbage_is_reported() {
        let archive = crate::api::pack_kubeconfig(b"apiVersion: v1\nkind: Config\n").unwrap();
        assert_eq!(
            unpack_kubeconfig("n", &archive).unwrap(),
            "apiVersion: v1\nkind: Config\n"
        );
        let error = unpack_kubeconfig("n", b"not gzip").unwrap_err().to_string();
        assert!(error.contains("kubeconfig from n"), "{error}");
    }
}
