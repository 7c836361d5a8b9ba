//! The fake node's `machine.MachineService`: each call answers as machined (Talos
//! 1.13) does, with its status codes and messages, from the node's [`State`].

use std::sync::Arc;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use infraflux_talos::api::generated::common::Data;
use infraflux_talos::api::generated::machine::apply_configuration_request::Mode;
use infraflux_talos::api::generated::machine::machine_service_server::MachineService;
use infraflux_talos::api::generated::machine::reset_request::WipeMode;
use infraflux_talos::api::generated::machine::{
    ApplyConfiguration, ApplyConfigurationRequest, ApplyConfigurationResponse, Bootstrap,
    BootstrapRequest, BootstrapResponse, EtcdLeaveCluster, EtcdLeaveClusterRequest,
    EtcdLeaveClusterResponse, EtcdMember, EtcdMemberListRequest, EtcdMemberListResponse,
    EtcdMembers, EtcdRemoveMemberById, EtcdRemoveMemberByIdRequest, EtcdRemoveMemberByIdResponse,
    PlatformInfo, ReadRequest, Reset, ResetRequest, ResetResponse, ServiceHealth, ServiceInfo,
    ServiceList, ServiceListResponse, Upgrade, UpgradeRequest, UpgradeResponse, Version,
    VersionInfo, VersionResponse,
};
use infraflux_talos::api::pack_kubeconfig;

use super::config::{
    NodePki, bootstrapped, identity, image_version, kubeconfig_yaml, read_config, reboot_changes,
};
use super::etcd::{LocalEtcd, MemberStatus, RemoveRefusal};
use super::{
    AfterReboot, AppliedConfig, CHUNK, ConnectionInfo, Etcd, NodeEvent, REBOOT_DELAY, Shared,
    Stage, State,
};

pub(super) struct FakeService {
    shared: Arc<Shared>,
}

fn authenticated<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<ConnectionInfo>()
        .is_some_and(|info| info.authenticated)
}

/// machined's `CheckControlplane`: etcd and bootstrap calls on a worker.
fn require_control_plane(pki: &NodePki, api: &str) -> Result<(), Status> {
    if pki.is_control_plane() {
        Ok(())
    } else {
        Err(Status::unimplemented(format!(
            "{api} is only available on control plane nodes"
        )))
    }
}

/// A member list has a leader while a strict majority of its members is started.
fn has_leader(members: &[MemberStatus]) -> bool {
    members.iter().filter(|m| m.started).count() > members.len() / 2
}

fn actor_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl FakeService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        FakeService { shared }
    }

    /// Configured nodes answer only connections with a verified client certificate
    /// (the TLS handshake already refuses others; this guards connections made while
    /// the node was still in maintenance mode).
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

    /// The node's etcd clusters and its own cluster's key.
    fn etcd(&self, pki: &NodePki) -> (Etcd, String) {
        (
            self.shared.state().etcd.clone(),
            pki.cluster_key().to_string(),
        )
    }

    /// The first config: the node installs it (and the installer image's version) and
    /// starts its services (not ready for a while). machined answers `NO_REBOOT` for a
    /// `REBOOT` or `AUTO` request in maintenance mode.
    fn apply_in_maintenance(
        state: &mut State,
        requested: Mode,
        data: &[u8],
        pki: NodePki,
    ) -> (Mode, &'static str) {
        if requested == Mode::Staged {
            state.staged = Some((data.to_vec(), pki));
            return (
                Mode::Staged,
                "Staged configuration to be applied after the next reboot",
            );
        }
        if let Some(version) = pki.installer_image.as_deref().and_then(image_version) {
            state.version = version;
        }
        state.stage = Stage::Configured;
        state.pki = Some(pki);
        state.config = Some(data.to_vec());
        state.ready_at = Instant::now() + state.not_ready_window;
        let mode = if requested == Mode::Try {
            Mode::Try
        } else {
            Mode::NoReboot
        };
        (mode, "Applied configuration without a reboot")
    }

    /// A later config: in place when Talos can, with a reboot when asked or needed
    /// (`AUTO`), refused in `NO_REBOOT`/`TRY` mode when it cannot. Returns the mode,
    /// the details, and whether the node now reboots.
    fn apply_configured(
        state: &mut State,
        requested: Mode,
        data: &[u8],
        current: &NodePki,
        pki: NodePki,
    ) -> Result<(Mode, String, bool), Status> {
        let changes = reboot_changes(&current.needs_reboot, &pki.needs_reboot);
        let immediate = changes.is_empty();
        let refusal = format!(
            "this config change can't be applied in immediate mode\ndiff:\n{}",
            changes.join("\n")
        );
        let outcome = match requested {
            Mode::NoReboot | Mode::Try if !immediate => {
                return Err(Status::invalid_argument(refusal));
            }
            Mode::Staged => {
                state.staged = Some((data.to_vec(), pki));
                return Ok((
                    Mode::Staged,
                    "Staged configuration to be applied after the next reboot".into(),
                    false,
                ));
            }
            Mode::Auto if !immediate => (
                Mode::Reboot,
                format!("Applied configuration with a reboot: {refusal}"),
                true,
            ),
            Mode::Reboot => (
                Mode::Reboot,
                "Applied configuration with a reboot".into(),
                true,
            ),
            Mode::Try => (
                Mode::Try,
                "Applied configuration without a reboot".into(),
                false,
            ),
            Mode::NoReboot | Mode::Auto => (
                Mode::NoReboot,
                "Applied configuration without a reboot".into(),
                false,
            ),
        };
        if !outcome.2 && kubelet_of(state.config.as_deref()) != kubelet_of(Some(data)) {
            state.kubelet_ready_at = Instant::now() + state.not_ready_window;
        }
        state.pki = Some(pki);
        state.config = Some(data.to_vec());
        state.reboot_pending = outcome.2;
        Ok(outcome)
    }

    /// What a `Reset` does once answered: a graceful reset of a control plane leaves
    /// etcd first (and stops there if etcd refuses), then the node wipes and reboots
    /// (or halts).
    async fn run_reset(shared: Arc<Shared>, graceful: bool, reboot: bool, wipe_system: bool) {
        tokio::time::sleep(REBOOT_DELAY / 2).await;
        let (etcd, pki, local) = {
            let state = shared.state();
            (state.etcd.clone(), state.pki.clone(), state.local_etcd)
        };
        if graceful
            && let Some(pki) = pki.as_ref().filter(|p| p.is_control_plane())
            && let LocalEtcd::Member(id) = local
        {
            match etcd.remove(pki.cluster_key(), id, LocalEtcd::Stopped) {
                Ok(()) | Err(RemoveRefusal::NotFound) => {}
                Err(refusal) => {
                    shared.state().sequence_errors.push(format!(
                        "reset failed: leave etcd: failed to remove member {id}: {}",
                        refusal.etcd_error()
                    ));
                    return;
                }
            }
        }
        let after = if wipe_system {
            AfterReboot::Wipe
        } else {
            AfterReboot::Restart
        };
        if reboot {
            shared.begin_reboot(after);
        } else {
            if wipe_system {
                shared.state().wipe();
            }
            shared.halt();
        }
    }
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
            if state.pki.is_some() && !authenticated {
                return Err(Status::unauthenticated(
                    "client certificate required once the node is configured",
                ));
            }
            if state.reboot_pending {
                return Err(Status::failed_precondition(
                    "configuration was already applied and node is rebooting, cannot apply more configuration changes until next reboot",
                ));
            }
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
        let control_plane = pki
            .is_control_plane()
            .then(|| pki.cluster_key().to_string());
        // The lock is released before the hook is awaited (the guard is not `Send`).
        let (mode, details, reboot, hook, etcd) = {
            let mut state = self.shared.state();
            let (mode, details, reboot) = match state.pki.clone() {
                None => {
                    let (mode, details) =
                        Self::apply_in_maintenance(&mut state, requested, &message.data, pki);
                    (mode, details.to_string(), false)
                }
                Some(current) => {
                    Self::apply_configured(&mut state, requested, &message.data, &current, pki)?
                }
            };
            state.applies.push(AppliedConfig {
                requested_mode: message.mode,
                authenticated,
                config: message.data,
            });
            (
                mode,
                details,
                reboot,
                state.hook.clone(),
                state.etcd.clone(),
            )
        };
        if let Some(cluster) = control_plane {
            etcd.register(&cluster, &self.shared);
        }
        if let Some(hook) = hook {
            hook(event).await;
        }
        if reboot {
            self.shared.begin_reboot(AfterReboot::Restart);
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
        {
            let mut state = self.shared.state();
            state.bootstrap_calls += 1;
            // machined checks that the container runtime is up before anything else.
            if !state.is_ready(Instant::now()) {
                return Err(Status::failed_precondition(
                    "bootstrap is not available yet",
                ));
            }
        }
        require_control_plane(&pki, "bootstrap")?;
        let (etcd, cluster) = self.etcd(&pki);
        if etcd.bootstrap(&cluster, &self.shared).is_none() {
            return Err(Status::already_exists("etcd data directory is not empty"));
        }
        let hook = self.shared.state().hook.clone();
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
        require_control_plane(&pki, "member list")?;
        let (etcd, cluster) = self.etcd(&pki);
        let members = etcd.members(&cluster);
        if members.is_empty() {
            return Err(Status::failed_precondition(
                "etcd is not running on this node",
            ));
        }
        if !has_leader(&members) {
            return Err(Status::unknown("etcdserver: no leader"));
        }
        Ok(Response::new(EtcdMemberListResponse {
            messages: vec![EtcdMembers {
                metadata: None,
                legacy_members: members.iter().map(|m| m.hostname.clone()).collect(),
                members: members
                    .iter()
                    .map(|m| EtcdMember {
                        id: m.id,
                        hostname: m.hostname.clone(),
                        peer_urls: vec![format!("https://{}:2380", m.ip)],
                        client_urls: vec![format!("https://{}:2379", m.ip)],
                        is_learner: false,
                    })
                    .collect(),
            }],
        }))
    }

    async fn etcd_remove_member_by_id(
        &self,
        request: Request<EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<EtcdRemoveMemberByIdResponse>, Status> {
        let pki = self.require_configured(&request)?;
        require_control_plane(&pki, "etcd remove member")?;
        let id = request.get_ref().member_id;
        let (etcd, cluster) = self.etcd(&pki);
        match etcd.remove(&cluster, id, LocalEtcd::Removed) {
            Ok(()) => Ok(Response::new(EtcdRemoveMemberByIdResponse {
                messages: vec![EtcdRemoveMemberById { metadata: None }],
            })),
            Err(RemoveRefusal::NotFound) => Err(Status::not_found(format!(
                "failed to remove member {id}: {}",
                RemoveRefusal::NotFound.etcd_error()
            ))),
            // machined wraps etcd's error in a plain error: gRPC code Unknown.
            Err(refusal) => Err(Status::unknown(format!(
                "failed to remove member: failed to remove member {id}: {}",
                refusal.etcd_error()
            ))),
        }
    }

    async fn etcd_leave_cluster(
        &self,
        request: Request<EtcdLeaveClusterRequest>,
    ) -> Result<Response<EtcdLeaveClusterResponse>, Status> {
        let pki = self.require_configured(&request)?;
        require_control_plane(&pki, "etcd leave")?;
        let local = self.shared.state().local_etcd;
        let LocalEtcd::Member(id) = local else {
            return Err(Status::unknown(
                "failed to leave cluster: this node is not an etcd member",
            ));
        };
        let (etcd, cluster) = self.etcd(&pki);
        match etcd.remove(&cluster, id, LocalEtcd::Stopped) {
            Ok(()) => {}
            // Removed already (by id, from another node): etcd stops all the same.
            Err(RemoveRefusal::NotFound) => self.shared.set_local_etcd(LocalEtcd::Stopped),
            Err(refusal) => {
                return Err(Status::unknown(format!(
                    "failed to leave cluster: failed to remove member {id}: {}",
                    refusal.etcd_error()
                )));
            }
        }
        Ok(Response::new(EtcdLeaveClusterResponse {
            messages: vec![EtcdLeaveCluster { metadata: None }],
        }))
    }

    type KubeconfigStream = DataStream;

    async fn kubeconfig(
        &self,
        request: Request<()>,
    ) -> Result<Response<Self::KubeconfigStream>, Status> {
        let pki = self.require_configured(&request)?;
        require_control_plane(&pki, "kubeconfig")?;
        let yaml = kubeconfig_yaml(&pki)?;
        let archive =
            pack_kubeconfig(yaml.as_bytes()).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(data_stream(&archive)))
    }

    type ReadStream = DataStream;

    /// `talosctl read`: only the file a provisioner reads, the machine config as it was
    /// applied (Talos persists the bytes it was given, unchanged). Any other path is
    /// answered as the real node answers a file it does not have.
    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.require_configured(&request)?;
        let path = request.into_inner().path;
        let config = self.shared.state().config.clone();
        let bytes = match config {
            Some(bytes) if path == infraflux_talos::drift::APPLIED_CONFIG_PATH => bytes,
            _ => {
                return Err(Status::unknown(format!(
                    "open {path}: no such file or directory"
                )));
            }
        };
        Ok(Response::new(data_stream(&bytes)))
    }

    async fn reset(
        &self,
        request: Request<ResetRequest>,
    ) -> Result<Response<ResetResponse>, Status> {
        self.require_configured(&request)?;
        let message = request.into_inner();
        let mode = WipeMode::try_from(message.mode).unwrap_or(WipeMode::All);
        if mode == WipeMode::SystemDisk && !message.user_disks_to_wipe.is_empty() {
            return Err(Status::unknown(
                "reset failed: invalid input, wipe mode SYSTEM_DISK doesn't support UserDisksToWipe parameter",
            ));
        }
        let wipe_system = mode != WipeMode::UserDisks;
        tokio::spawn(Self::run_reset(
            self.shared.clone(),
            message.graceful,
            message.reboot,
            wipe_system,
        ));
        Ok(Response::new(ResetResponse {
            messages: vec![Reset {
                metadata: None,
                actor_id: actor_id(),
            }],
        }))
    }

    async fn service_list(
        &self,
        request: Request<()>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        let pki = self.require_configured(&request)?;
        if pki.is_control_plane() {
            // Lets a control plane that has become ready join a bootstrapped cluster.
            let (etcd, cluster) = self.etcd(&pki);
            etcd.members(&cluster);
        }
        let (ready, kubelet, local) = {
            let state = self.shared.state();
            let now = Instant::now();
            (
                state.is_ready(now),
                state.kubelet_is_ready(now),
                state.local_etcd,
            )
        };
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
        let mut services = vec![service("apid", true), service("kubelet", kubelet)];
        if pki.is_control_plane() {
            let member = matches!(local, LocalEtcd::Member(_));
            services.push(service("etcd", ready && member));
        }
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: None,
                services,
            }],
        }))
    }

    async fn upgrade(
        &self,
        request: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        if self.shared.state().pki.is_none() {
            return Err(Status::failed_precondition("Talos is not installed"));
        }
        let pki = self.require_configured(&request)?;
        let message = request.into_inner();
        let version = image_version(&message.image).ok_or_else(|| {
            Status::unknown(format!(
                "error validating installer image {:?}: its tag is not a Talos version (vX.Y.Z)",
                message.image
            ))
        })?;
        if pki.is_control_plane() && !message.force && !message.preserve {
            let (etcd, cluster) = self.etcd(&pki);
            let members = etcd.members(&cluster);
            if members.is_empty() {
                return Err(Status::unknown(
                    "failed to create etcd client: etcd is not running on any control plane",
                ));
            }
            if members.len() == 2 {
                return Err(Status::unknown(
                    "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences",
                ));
            }
            if let Some(down) = members.iter().find(|m| !m.started) {
                return Err(Status::unknown(format!(
                    "error validating etcd for upgrade: etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded",
                    down.id
                )));
            }
        }
        // A staged upgrade reboots all the same: the new system is installed on the way.
        self.shared.begin_reboot(AfterReboot::Upgrade(version));
        Ok(Response::new(UpgradeResponse {
            messages: vec![Upgrade {
                metadata: None,
                ack: "Upgrade request received".into(),
                actor_id: actor_id(),
            }],
        }))
    }

    async fn version(&self, request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        let (maintenance, version) = {
            let state = self.shared.state();
            (state.pki.is_none(), state.version.clone())
        };
        if !maintenance && !authenticated(&request) {
            return Err(Status::unauthenticated(
                "client certificate required once the node is configured",
            ));
        }
        Ok(Response::new(VersionResponse {
            messages: vec![Version {
                metadata: None,
                version: Some(VersionInfo {
                    tag: version,
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

/// The `machine.kubelet` section of a config (what restarts the kubelet when it changes).
fn kubelet_of(config: Option<&[u8]>) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(config?).ok()?;
    infraflux_talos::config::parse_documents(text)
        .ok()?
        .iter()
        .find_map(|d| d.get("machine")?.get("kubelet").cloned())
}

/// A stream of `common.Data` chunks, as Talos streams files and archives.
type DataStream = tokio_stream::Iter<std::vec::IntoIter<Result<Data, Status>>>;

fn data_stream(bytes: &[u8]) -> DataStream {
    let chunks: Vec<Result<Data, Status>> = bytes
        .chunks(CHUNK)
        .map(|chunk| {
            Ok(Data {
                metadata: None,
                bytes: chunk.to_vec(),
            })
        })
        .collect();
    tokio_stream::iter(chunks)
}
