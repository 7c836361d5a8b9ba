//! The `Provider` implementation: `talos_secrets`, `talos_machine_config`,
//! `talos_bootstrap`, `talos_kubeconfig`. Attribute layouts are documented in the
//! crate's README.md.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infraflux_provider::{
    AttributeSchema, Attributes, CreateRequest, CreateResponse, DeleteRequest, ErrorKind,
    ImportRequest, ImportResponse, Operation, PlanRequest, PlanResponse, Provider, ProviderError,
    ReadOutcome, ReadRequest, ReadResponse, ReadResult, ResourceRef, ResourceSchema, Rollout,
    UpdateRequest, UpdateResponse, contains_unknown, unknown,
};
use infraflux_provider::{Diagnostic, Severity, ValidateRequest, ValidateResponse};
use serde_json::{Value, json};
use tracing::{info, instrument, warn};

use crate::api::{
    ApplyMode, BootstrapOutcome, ClientIdentity, ConnectOptions, Credentials, DEFAULT_PORT,
    NodeClient, NodeMode, detect, detect_mode,
};
use crate::bootstrap::{Backoff, BootstrapOptions, bootstrap};
use crate::compatibility;
use crate::config::{
    ClusterSettings, EncodedSecrets, NodeSettings, Renderer, Role, address_ip, installer_image,
    masked_yaml, to_yaml,
};
use crate::drift::{kubelet_version_of, read_applied_config, recorded_kubelet_version, sha256_hex};
use crate::error::{ApiErrorKind, Error};
use crate::node_object::{ClusterApi, delete_node_object, node_status, wait_for_node};
use crate::removal::{Removal, RemovalOptions, remove_node};
use crate::secrets::{ClusterSecrets, attribute as secret};
use crate::upgrade::{Health, RolloutOptions, Upgraded, node_health, upgrade_node};

pub const SECRETS: &str = "talos_secrets";
pub const MACHINE_CONFIG: &str = "talos_machine_config";
pub const BOOTSTRAP: &str = "talos_bootstrap";
pub const KUBECONFIG: &str = "talos_kubeconfig";

const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
const DEFAULT_INTERFACE: &str = "eth0";
/// How long `talos_bootstrap` waits for a node to accept `Bootstrap`: a real node
/// installs, reboots and starts its container runtime first.
const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(600);
/// Installing and rebooting take minutes on real hardware.
const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(1200);
/// From a node passing its Talos gates to its Node object being Ready on the expected
/// kubelet (the kubelet registers and posts its status within seconds to a minute).
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(600);
/// Draining honours PodDisruptionBudgets: minutes on a busy node.
const DEFAULT_REMOVAL_TIMEOUT: Duration = Duration::from_secs(900);

/// The Talos provider. Holds no connections between operations: each operation
/// connects to the node it is about, once.
#[derive(Debug, Clone, Default)]
pub struct TalosProvider {
    pub connect: ConnectOptions,
}

impl TalosProvider {
    pub fn new(connect: ConnectOptions) -> Self {
        TalosProvider { connect }
    }
}

fn provider_error(operation: &str, address: &str, error: Error) -> ProviderError {
    let kind = match &error {
        Error::Api { kind, .. } => match kind {
            ApiErrorKind::Unreachable | ApiErrorKind::ConnectionLost | ApiErrorKind::Timeout => {
                ErrorKind::Transient
            }
            ApiErrorKind::Unauthenticated => ErrorKind::Permission,
            ApiErrorKind::Rejected => ErrorKind::InvalidInput,
            ApiErrorKind::NotReady => ErrorKind::Transient,
            ApiErrorKind::NotFound => ErrorKind::NotFound,
            ApiErrorKind::AlreadyExists => ErrorKind::Conflict,
            ApiErrorKind::Other => ErrorKind::Other,
        },
        Error::InvalidSecrets(_) | Error::InvalidInput { .. } | Error::Patch { .. } => {
            ErrorKind::InvalidInput
        }
        Error::Tls { .. } => ErrorKind::Permission,
        Error::Timeout { .. } | Error::BootstrapUnavailable { .. } => ErrorKind::Transient,
        Error::Generate { .. } | Error::Kubeconfig { .. } => ErrorKind::Other,
    };
    ProviderError::new(kind, operation, address, error.to_string())
}

fn invalid(operation: &str, address: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, operation, address, message)
}

// ---- attribute access ----------------------------------------------------------------

struct Reader<'a> {
    attributes: &'a Attributes,
    operation: &'a str,
    address: &'a str,
}

impl<'a> Reader<'a> {
    fn new(attributes: &'a Attributes, operation: &'a str, address: &'a str) -> Self {
        Reader {
            attributes,
            operation,
            address,
        }
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, ProviderError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(
                self.operation,
                self.address,
                format!("`{name}` must be a string"),
            )),
        }
    }

    /// A duration given in seconds (fractions allowed: tests wait well under one).
    fn optional_seconds(&self, name: &str) -> Result<Option<Duration>, ProviderError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Some(Duration::from_secs_f64(s)))
                .ok_or_else(|| {
                    invalid(
                        self.operation,
                        self.address,
                        format!("`{name}` must be a non-negative number of seconds"),
                    )
                }),
        }
    }

    fn string(&self, name: &str) -> Result<String, ProviderError> {
        self.optional_string(name)?.ok_or_else(|| {
            invalid(
                self.operation,
                self.address,
                format!("`{name}` is required"),
            )
        })
    }

    fn string_list(&self, name: &str) -> Result<Vec<String>, ProviderError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        invalid(
                            self.operation,
                            self.address,
                            format!("`{name}` must be a list of strings"),
                        )
                    })
                })
                .collect(),
            Some(_) => Err(invalid(
                self.operation,
                self.address,
                format!("`{name}` must be a list"),
            )),
        }
    }

    /// Patches: YAML strings, or mappings (which are serialised to YAML).
    fn patches(&self) -> Result<Vec<String>, ProviderError> {
        match self.attributes.get("patches") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    Value::Object(_) => to_yaml(std::slice::from_ref(item))
                        .map_err(|e| provider_error(self.operation, self.address, e)),
                    _ => Err(invalid(
                        self.operation,
                        self.address,
                        "`patches` items must be YAML strings or mappings",
                    )),
                })
                .collect(),
            Some(_) => Err(invalid(
                self.operation,
                self.address,
                "`patches` must be a list",
            )),
        }
    }

    fn secrets_object(&self) -> Result<&'a serde_json::Map<String, Value>, ProviderError> {
        self.attributes
            .get("secrets")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                invalid(
                    self.operation,
                    self.address,
                    "`secrets` is required: an object of talos_secrets attributes (references)",
                )
            })
    }

    fn secrets(&self) -> Result<ClusterSecrets, ProviderError> {
        crate::validated::secrets_of(self.secrets_object()?)
            .map_err(|e| provider_error(self.operation, self.address, e))
    }

    /// [`Self::secrets`], encoded for a renderer (shared by the cluster's machine configs).
    fn encoded_secrets(&self) -> Result<Arc<EncodedSecrets>, ProviderError> {
        crate::validated::encoded_secrets_of(self.secrets_object()?)
            .map_err(|e| provider_error(self.operation, self.address, e))
    }

    /// Only the three values a Talos API client needs.
    fn identity(&self) -> Result<ClientIdentity, ProviderError> {
        let object = self.secrets_object()?;
        let get = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    invalid(
                        self.operation,
                        self.address,
                        format!("`secrets.{name}` is required"),
                    )
                })
        };
        Ok(ClientIdentity {
            ca_crt: get(secret::OS_CA_CRT)?,
            client_crt: get(secret::ADMIN_CRT)?,
            client_key: get(secret::ADMIN_KEY)?,
        })
    }
}

// ---- talos_machine_config inputs -----------------------------------------------------------

struct MachineConfigInputs {
    renderer: Renderer,
    node: NodeSettings,
    /// Where the Talos API answers once the node is configured.
    talos_endpoint: String,
    /// Where the node answers in maintenance mode (often a DHCP address).
    maintenance_endpoint: String,
    identity: ClientIdentity,
}

fn machine_config_inputs(
    attributes: &Attributes,
    operation: &str,
    address: &str,
) -> Result<MachineConfigInputs, ProviderError> {
    let r = Reader::new(attributes, operation, address);
    let talos_version = r.string("talos_version")?;
    let installer = installer_of(&r)?;
    let vip = match r.optional_string("vip")? {
        Some(vip) => Some(
            vip.parse()
                .map_err(|_| invalid(operation, address, format!("`vip` `{vip}` is not an IP")))?,
        ),
        None => None,
    };
    let cluster = ClusterSettings {
        cluster_name: r.string("cluster_name")?,
        endpoint: r.string("endpoint")?,
        talos_version,
        kubernetes_version: r.string("kubernetes_version")?,
        installer_image: installer,
        pod_cidr: r
            .optional_string("pod_cidr")?
            .unwrap_or_else(|| DEFAULT_POD_CIDR.into()),
        service_cidr: r
            .optional_string("service_cidr")?
            .unwrap_or_else(|| DEFAULT_SERVICE_CIDR.into()),
        vip,
    };
    let node_address = r.string("address")?;
    let node = NodeSettings {
        hostname: r.string("hostname")?,
        role: Role::parse(&r.string("role")?).map_err(|e| provider_error(operation, address, e))?,
        gateway: r.optional_string("gateway")?,
        dns: r.string_list("dns")?,
        install_disk: r.string("install_disk")?,
        interface: r
            .optional_string("interface")?
            .unwrap_or_else(|| DEFAULT_INTERFACE.into()),
        patches: r.patches()?,
        address: node_address.clone(),
    };
    let secrets = r.encoded_secrets()?;
    let renderer = Renderer::with_secrets(cluster, secrets.clone())
        .map_err(|e| provider_error(operation, address, e))?;
    let talos_endpoint = match r.optional_string("talos_endpoint")? {
        Some(endpoint) => endpoint,
        None => {
            let ip = address_ip(&node_address)
                .ok_or_else(|| invalid(operation, address, "`address` must be in CIDR form"))?;
            if ip.is_ipv6() {
                format!("[{ip}]:{DEFAULT_PORT}")
            } else {
                format!("{ip}:{DEFAULT_PORT}")
            }
        }
    };
    let maintenance_endpoint = r
        .optional_string("maintenance_endpoint")?
        .unwrap_or_else(|| talos_endpoint.clone());
    Ok(MachineConfigInputs {
        renderer,
        node,
        talos_endpoint,
        maintenance_endpoint,
        identity: ClientIdentity::from_secrets(secrets.raw()),
    })
}

/// The installer image a machine config installs: given, or the Image Factory's for
/// its schematic and Talos version.
fn installer_of(r: &Reader) -> Result<String, ProviderError> {
    match r.optional_string("installer_image")? {
        Some(image) => Ok(image),
        None => Ok(installer_image(
            &r.string("schematic")?,
            &r.string("talos_version")?,
        )),
    }
}

/// Whether the node can go from the versions it has (`prior`, as refresh read them) to
/// the desired ones in one step (Talos's upgrade paths, one Kubernetes minor at a time).
fn version_change(prior: &Attributes, desired: &Attributes) -> Result<(), String> {
    let version = |attributes: &Attributes, name: &str| {
        attributes
            .get(name)
            .and_then(Value::as_str)
            .and_then(compatibility::parse)
    };
    if let (Some(from), Some(to)) = (
        version(prior, "talos_version"),
        version(desired, "talos_version"),
    ) {
        compatibility::check_talos_change(&from, &to)?;
    }
    if let (Some(from), Some(to)) = (
        version(prior, "kubernetes_version"),
        version(desired, "kubernetes_version"),
    ) {
        compatibility::check_kubernetes_change(&from, &to)?;
    }
    Ok(())
}

/// The cluster's Kubernetes API as its admin, from a machine config's attributes.
fn cluster_api(
    attributes: &Attributes,
    operation: &str,
    address: &str,
) -> Result<ClusterApi, ProviderError> {
    let r = Reader::new(attributes, operation, address);
    let secrets = r.secrets()?;
    ClusterApi::as_admin(&r.string("endpoint")?, &secrets.kubernetes_ca)
        .map_err(|e| provider_error(operation, address, e))
}

/// The kubelet version a rendered config runs, as its Node reports it (`v1.34.1`).
fn expected_kubelet(rendered: &str) -> Option<String> {
    kubelet_version_of(rendered).map(|v| format!("v{v}"))
}

/// Delete the machine's Node object (see [`crate::node_object`]). The node has left
/// already, so a failure is a warning with the command that finishes the job, not
/// a failed removal.
async fn remove_node_object(prior: &Attributes, hostname: &str, address: &str) {
    let deleted = async {
        let api = cluster_api(prior, "delete", address)?;
        delete_node_object(&api, hostname)
            .await
            .map_err(|e| provider_error("delete", address, e))
    }
    .await;
    match deleted {
        Ok(true) => info!(%address, %hostname, "deleted its Node object"),
        Ok(false) => info!(%address, %hostname, "it had no Node object"),
        Err(error) => warn!(
            %address,
            %error,
            "its Node object may remain (NotReady): `kubectl delete node {hostname}`"
        ),
    }
}

/// Rendering and its plan-readable twin.
fn render(
    inputs: &MachineConfigInputs,
    operation: &str,
    address: &str,
) -> Result<(String, String), ProviderError> {
    let (documents, rendered) = render_documents(inputs, operation, address)?;
    let masked = masked_yaml(&documents).map_err(|e| provider_error(operation, address, e))?;
    Ok((rendered, masked))
}

/// The config's documents and its YAML.
fn render_documents(
    inputs: &MachineConfigInputs,
    operation: &str,
    address: &str,
) -> Result<(Vec<Value>, String), ProviderError> {
    let documents = inputs
        .renderer
        .documents(&inputs.node)
        .map_err(|e| provider_error(operation, address, e))?;
    let rendered = to_yaml(&documents).map_err(|e| provider_error(operation, address, e))?;
    Ok((documents, rendered))
}

// ---- schemas ----------------------------------------------------------------------

fn secrets_schema() -> ResourceSchema {
    let mut attributes = vec![AttributeSchema::input("cluster_name")];
    attributes.extend(
        secret::ALL
            .iter()
            .map(|name| AttributeSchema::computed(*name).sensitive()),
    );
    ResourceSchema::new(SECRETS, attributes)
}

fn machine_config_schema() -> ResourceSchema {
    let inputs = [
        "cluster_name",
        "endpoint",
        "hostname",
        "address",
        "gateway",
        "dns",
        "role",
        "install_disk",
        "talos_version",
        "schematic",
        "installer_image",
        "kubernetes_version",
        "pod_cidr",
        "service_cidr",
        "interface",
        "vip",
        "patches",
        "talos_endpoint",
        "maintenance_endpoint",
    ];
    let mut attributes: Vec<AttributeSchema> =
        inputs.iter().map(|n| AttributeSchema::input(*n)).collect();
    attributes.push(AttributeSchema::input("secrets").sensitive());
    attributes.extend([
        // Rendered from the inputs at every plan, and recorded by its digest
        // (`config_sha256`) and masked: the rendered copy was a quarter of a fleet's
        // state.
        AttributeSchema::computed("machine_config")
            .sensitive()
            .unrecorded(),
        AttributeSchema::computed("machine_config_masked"),
        AttributeSchema::computed("config_sha256"),
        AttributeSchema::computed("apply_mode"),
        AttributeSchema::computed("apply_details"),
    ]);
    ResourceSchema::new(MACHINE_CONFIG, attributes)
}

fn bootstrap_schema() -> ResourceSchema {
    ResourceSchema::new(
        BOOTSTRAP,
        vec![
            AttributeSchema::input("endpoint"),
            AttributeSchema::input("timeout_seconds"),
            AttributeSchema::input("secrets").sensitive(),
            AttributeSchema::computed("bootstrapped_node"),
            AttributeSchema::computed("already_bootstrapped"),
        ],
    )
}

fn kubeconfig_schema() -> ResourceSchema {
    ResourceSchema::new(
        KUBECONFIG,
        vec![
            AttributeSchema::input("endpoint"),
            AttributeSchema::input("secrets").sensitive(),
            AttributeSchema::computed("kubeconfig").sensitive(),
        ],
    )
}

fn secrets_id(secrets: &ClusterSecrets) -> String {
    format!(
        "talos-secrets-{}",
        &sha256_hex(secrets.cluster_id.as_bytes())[..12]
    )
}

// ---- operations ---------------------------------------------------------------------

impl TalosProvider {
    /// Apply over mTLS to a configured node: no reboot where the node can, `auto`
    /// (the node decides) where it cannot.
    async fn apply_configured(
        &self,
        inputs: &MachineConfigInputs,
        rendered: &str,
        operation: &str,
        address: &str,
    ) -> Result<(ApplyMode, String), ProviderError> {
        let credentials = Credentials::Mutual(inputs.identity.clone());
        let mut client = NodeClient::connect(&inputs.talos_endpoint, &credentials, &self.connect)
            .await
            .map_err(|e| provider_error(operation, address, e))?;
        match client
            .apply_configuration(rendered.as_bytes(), ApplyMode::NoReboot)
            .await
        {
            Ok(outcome) => Ok((outcome.mode, outcome.details)),
            Err(error) if error.api_kind() == Some(ApiErrorKind::Rejected) => {
                info!(%error, "the change needs a reboot; applying in auto mode");
                let outcome = client
                    .apply_configuration(rendered.as_bytes(), ApplyMode::Auto)
                    .await
                    .map_err(|e| provider_error(operation, address, e))?;
                Ok((outcome.mode, outcome.details))
            }
            Err(error) => Err(provider_error(operation, address, error)),
        }
    }

    fn machine_config_attributes(
        planned: &Attributes,
        rendered: &str,
        masked: String,
        mode: ApplyMode,
        details: String,
    ) -> Attributes {
        let mut attributes = planned.clone();
        attributes.insert("machine_config".into(), json!(rendered));
        attributes.insert("machine_config_masked".into(), json!(masked));
        attributes.insert(
            "config_sha256".into(),
            json!(sha256_hex(rendered.as_bytes())),
        );
        attributes.insert("apply_mode".into(), json!(mode.as_str()));
        attributes.insert("apply_details".into(), json!(details));
        attributes
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn create_machine_config(
        &self,
        request: CreateRequest,
    ) -> Result<CreateResponse, ProviderError> {
        let address = request.resource.address.as_str();
        let inputs = machine_config_inputs(&request.planned, "create", address)?;
        let (rendered, masked) = render(&inputs, "create", address)?;
        let mode = detect_mode(
            &inputs.maintenance_endpoint,
            Some(&inputs.identity),
            &self.connect,
        )
        .await
        .map_err(|e| provider_error("create", address, e))?;
        let (mode, details) = match mode {
            NodeMode::Maintenance => {
                let mut client = NodeClient::connect(
                    &inputs.maintenance_endpoint,
                    &Credentials::Insecure,
                    &self.connect,
                )
                .await
                .map_err(|e| provider_error("create", address, e))?;
                let outcome = client
                    .apply_configuration(rendered.as_bytes(), ApplyMode::Auto)
                    .await
                    .map_err(|e| provider_error("create", address, e))?;
                (outcome.mode, outcome.details)
            }
            NodeMode::Configured => {
                info!("node is configured already; applying over mTLS");
                self.apply_configured(&inputs, &rendered, "create", address)
                    .await?
            }
        };
        if request.replacing {
            // A node replacing another (its VM replaced) is back in the cluster before
            // the run goes on: the next one may leave only then.
            self.gate_replacement(&inputs, &request.planned, &rendered, address)
                .await?;
        }
        Ok(CreateResponse {
            id: inputs.node.hostname.clone(),
            attributes: Self::machine_config_attributes(
                &request.planned,
                &rendered,
                masked,
                mode,
                details,
            ),
        })
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn update_machine_config(
        &self,
        request: UpdateRequest,
    ) -> Result<UpdateResponse, ProviderError> {
        let address = request.resource.address.as_str();
        let inputs = machine_config_inputs(&request.planned, "update", address)?;
        let (rendered, masked) = render(&inputs, "update", address)?;
        let unchanged = request.prior.get("config_sha256").and_then(Value::as_str)
            == Some(sha256_hex(rendered.as_bytes()).as_str());
        // The version the node runs, as refresh read it back, against the config's.
        let on_version = request.prior.get("talos_version") == request.planned.get("talos_version");
        if unchanged && on_version {
            // Inputs changed but the rendering did not (e.g. an equivalent patch form).
            return Ok(UpdateResponse {
                attributes: Self::kept_attributes(&request.prior, &request.planned),
            });
        }
        // What must be healthy again, sampled before the config changes anything: a
        // config applied in place restarts the kubelet when its section changed (a
        // Kubernetes upgrade), and the gate must wait for it. A node that does not
        // answer yet (a killed run's reboot) is sampled by the gate once it does.
        // Its Node, as the cluster's API shows it before the update: a Node that was
        // Ready must be Ready again, on the new kubelet, before the rollout goes on (an
        // API that does not answer, a cluster not bootstrapped yet: no Node gate).
        let api = cluster_api(&request.planned, "update", address)?;
        let node_was_ready = matches!(
            node_status(&api, &inputs.node.hostname).await,
            Ok(Some(status)) if status.ready
        );
        let before = if unchanged {
            None
        } else {
            node_health(
                &inputs.talos_endpoint,
                inputs.node.role,
                &inputs.identity,
                &self.connect,
            )
            .await
            .ok()
        };
        let applied = if unchanged {
            None
        } else {
            Some(
                self.apply_configured(&inputs, &rendered, "update", address)
                    .await?,
            )
        };
        // A new installer image in the config changes nothing on the node by itself:
        // the Upgrade call installs it. Every update is gated (back on the version,
        // healthy) before the rollout goes on to the next node; a node already on the
        // version (a resumed rollout, a config change) is only gated.
        let image = installer_of(&Reader::new(&request.planned, "update", address))?;
        let node_gate = node_was_ready.then(|| (&api, expected_kubelet(&rendered)));
        let upgraded = self
            .gate_node(&inputs, &image, before, node_gate, "update", address)
            .await?;
        info!(%address, ?upgraded, "rolled");
        let attributes = match applied {
            Some((mode, details)) => {
                Self::machine_config_attributes(&request.planned, &rendered, masked, mode, details)
            }
            None => Self::kept_attributes(&request.prior, &request.planned),
        };
        Ok(UpdateResponse { attributes })
    }

    /// One node's gates in a rollout: back on the installer image's Talos version and as
    /// healthy as `before` ([`upgrade_node`], which upgrades it first if it is on another
    /// version), then, when asked, its Node Ready on the given kubelet version.
    async fn gate_node(
        &self,
        inputs: &MachineConfigInputs,
        image: &str,
        before: Option<Health>,
        node: Option<(&ClusterApi, Option<String>)>,
        operation: &str,
        address: &str,
    ) -> Result<Upgraded, ProviderError> {
        let options = RolloutOptions {
            timeout: DEFAULT_UPGRADE_TIMEOUT,
            interval: Duration::from_millis(500),
            connect: self.connect,
        };
        let outcome = upgrade_node(
            &inputs.talos_endpoint,
            inputs.node.role,
            &inputs.identity,
            image,
            before,
            &options,
        )
        .await
        .map_err(|e| provider_error(operation, address, e))?;
        if let Some((api, kubelet)) = node {
            wait_for_node(
                api,
                &inputs.node.hostname,
                kubelet.as_deref(),
                DEFAULT_NODE_TIMEOUT,
                Duration::from_millis(500),
            )
            .await
            .map_err(|e| provider_error(operation, address, e))?;
        }
        Ok(outcome)
    }

    /// Wait until a replacing node is installed, on its Talos version, its kubelet
    /// healthy and, on a control plane, etcd healthy on it (it joined).
    async fn gate_replacement(
        &self,
        inputs: &MachineConfigInputs,
        planned: &Attributes,
        rendered: &str,
        address: &str,
    ) -> Result<(), ProviderError> {
        let image = installer_of(&Reader::new(planned, "create", address))?;
        let expected = Health {
            kubelet: true,
            etcd: inputs.node.role == Role::ControlPlane,
            members: 0,
        };
        // And its Node registered and Ready on its kubelet, when the API answers (the
        // cluster runs: it is a replacement).
        let api = cluster_api(planned, "create", address)?;
        let api_answers = match node_status(&api, &inputs.node.hostname).await {
            Ok(_) => true,
            Err(error) => {
                warn!(%address, %error, "the cluster's API does not answer: its Node is not waited for");
                false
            }
        };
        let node_gate = api_answers.then(|| (&api, expected_kubelet(rendered)));
        let joined = self
            .gate_node(inputs, &image, Some(expected), node_gate, "create", address)
            .await?;
        info!(%address, ?joined, "the replacing node is back in its cluster");
        Ok(())
    }

    /// The recorded attributes with the planned values that are known: the node kept
    /// its config.
    fn kept_attributes(prior: &Attributes, planned: &Attributes) -> Attributes {
        let mut attributes = prior.clone();
        for (key, value) in planned {
            if !contains_unknown(value) {
                attributes.insert(key.clone(), value.clone());
            }
        }
        attributes
    }

    fn plan_machine_config(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        let address = request.resource.address.as_str();
        let inputs_unknown = request.desired.values().any(contains_unknown);
        let mut response = machine_config_schema().default_plan(request.prior, request.desired);
        if inputs_unknown {
            for name in ["machine_config", "machine_config_masked", "config_sha256"] {
                response.planned.insert(name.into(), unknown());
            }
            return Ok(response);
        }
        // The desired attributes are the planned ones now, with the computed ones
        // carried from prior; only inputs are read below.
        let desired = &response.planned;
        if let Some(prior) = &request.prior {
            version_change(prior, desired).map_err(|problem| invalid("plan", address, problem))?;
        }
        let inputs = machine_config_inputs(desired, "plan", address)?;
        let (documents, rendered) = render_documents(&inputs, "plan", address)?;
        let sha = sha256_hex(rendered.as_bytes());
        let same_as_prior = request
            .prior
            .as_ref()
            .and_then(|p| p.get("config_sha256"))
            .and_then(Value::as_str)
            == Some(sha.as_str());
        // The same bytes as applied: the masked copy recorded then is this one's (masking
        // was a tenth of a steady fleet plan's provider time). Carried over from prior
        // by the default plan.
        let recorded_masked = same_as_prior
            && response
                .planned
                .get("machine_config_masked")
                .is_some_and(Value::is_string);
        if !recorded_masked {
            let masked = masked_yaml(&documents).map_err(|e| provider_error("plan", address, e))?;
            response
                .planned
                .insert("machine_config_masked".into(), json!(masked));
        }
        response
            .planned
            .insert("machine_config".into(), json!(rendered));
        response.planned.insert("config_sha256".into(), json!(sha));
        if !same_as_prior {
            response.planned.insert("apply_mode".into(), unknown());
            response.planned.insert("apply_details".into(), unknown());
        }
        Ok(response)
    }

    #[instrument(skip_all, fields(addr = %request.resource.address))]
    async fn create_bootstrap(
        &self,
        request: CreateRequest,
    ) -> Result<CreateResponse, ProviderError> {
        let address = request.resource.address.as_str();
        let r = Reader::new(&request.planned, "create", address);
        let endpoint = r.string("endpoint")?;
        let identity = r.identity()?;
        let timeout = r
            .optional_seconds("timeout_seconds")?
            .unwrap_or(DEFAULT_BOOTSTRAP_TIMEOUT);
        let options = BootstrapOptions {
            timeout,
            backoff: Backoff::default(),
            connect: self.connect,
        };
        let report = bootstrap(&endpoint, &identity, &options)
            .await
            .map_err(|e| provider_error("create", address, e))?;
        let outcome = report.outcome;
        let mut attributes = request.planned.clone();
        attributes.insert("bootstrapped_node".into(), json!(endpoint));
        attributes.insert(
            "already_bootstrapped".into(),
            json!(outcome == BootstrapOutcome::AlreadyBootstrapped),
        );
        Ok(CreateResponse {
            id: endpoint,
            attributes,
        })
    }

    #[instrument(skip_all, fields(addr = %address))]
    async fn fetch_kubeconfig(
        &self,
        planned: &Attributes,
        operation: &str,
        address: &str,
    ) -> Result<Attributes, ProviderError> {
        let r = Reader::new(planned, operation, address);
        let endpoint = r.string("endpoint")?;
        let credentials = Credentials::Mutual(r.identity()?);
        let mut client = NodeClient::connect(&endpoint, &credentials, &self.connect)
            .await
            .map_err(|e| provider_error(operation, address, e))?;
        let kubeconfig = client
            .kubeconfig()
            .await
            .map_err(|e| provider_error(operation, address, e))?;
        let mut attributes = planned.clone();
        attributes.insert("kubeconfig".into(), json!(kubeconfig));
        Ok(attributes)
    }

    /// Refresh one machine config: still configured → found; back in maintenance mode
    /// (reset, reinstalled) → gone, so the engine re-applies; unreachable → failed.
    async fn read_machine_config(&self, prior: &Attributes, address: &str) -> ReadOutcome {
        let inputs = match machine_config_inputs(prior, "read", address) {
            Ok(inputs) => inputs,
            Err(error) => return ReadOutcome::Failed(error),
        };
        match detect(
            &inputs.talos_endpoint,
            Some(&inputs.identity),
            &self.connect,
        )
        .await
        {
            // The version the node runs is read back: a node upgraded (or rolled back)
            // by hand shows as drift, and the plan brings it back.
            Ok((NodeMode::Configured, version)) => {
                let mut found = prior.clone();
                found.insert("talos_version".into(), json!(version.tag));
                // And the config it runs: one changed on the node by hand shows as
                // drift (its digest), with what changed (masked) and the Kubernetes
                // version it runs.
                match read_applied_config(&inputs.talos_endpoint, &inputs.identity, &self.connect)
                    .await
                {
                    Ok(applied) if !applied.differs_from(prior) => {}
                    Ok(applied) => {
                        found.insert("config_sha256".into(), json!(applied.sha256));
                        if let Some(masked) = applied.masked {
                            found.insert("machine_config_masked".into(), json!(masked));
                        }
                        // Only a kubelet changed on the node is Kubernetes version drift
                        // (a patch may pin the kubelet image on purpose).
                        if applied.kubernetes_version != recorded_kubelet_version(prior)
                            && let Some(version) = applied.kubernetes_version
                        {
                            found.insert("kubernetes_version".into(), json!(version));
                        }
                    }
                    Err(error) => {
                        return ReadOutcome::Failed(provider_error("read", address, error));
                    }
                }
                ReadOutcome::Found(found)
            }
            Ok((NodeMode::Maintenance, _)) => ReadOutcome::Gone,
            Err(error) => ReadOutcome::Failed(provider_error("read", address, error)),
        }
    }
}

#[async_trait]
impl Provider for TalosProvider {
    fn name(&self) -> &str {
        "talos"
    }

    /// A cluster's machine-config updates roll: one node at a time, control planes
    /// first, stopping at the first failure. An update may upgrade Talos (a reboot,
    /// etcd checks) or change what every node runs; one node at a time keeps etcd's
    /// quorum and the API up, and a bad change stops at the first node it breaks.
    fn rollout(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<Rollout> {
        if operation != Operation::Update || resource.kind != MACHINE_CONFIG {
            return None;
        }
        let cluster = attributes.get("cluster_name")?.as_str()?;
        let rank = match attributes.get("role").and_then(Value::as_str) {
            Some("controlplane") => 0,
            _ => 1,
        };
        Some(Rollout {
            key: format!("talos:{cluster}"),
            rank,
            gates: "back on its Talos version and as healthy as before (kubelet; etcd and its members on a control plane), its Node Ready on its kubelet".into(),
        })
    }

    /// A machine config's Talos and Kubernetes versions must go together (Talos's own
    /// support matrix, [`crate::compatibility`]).
    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        let mut response = ValidateResponse::default();
        if request.resource.kind != MACHINE_CONFIG {
            return response;
        }
        let version = |name: &str| {
            request
                .desired
                .get(name)
                .and_then(Value::as_str)
                .and_then(compatibility::parse)
        };
        if let (Some(talos), Some(kubernetes)) =
            (version("talos_version"), version("kubernetes_version"))
            && let Err(problem) = compatibility::check_kubernetes(&talos, &kubernetes)
        {
            response.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                attribute: Some("kubernetes_version".into()),
                summary: format!("Kubernetes {kubernetes} does not run on Talos {talos}"),
                detail: Some(problem),
            });
        }
        response
    }

    fn schemas(&self) -> Vec<ResourceSchema> {
        vec![
            secrets_schema(),
            machine_config_schema(),
            bootstrap_schema(),
            kubeconfig_schema(),
        ]
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for item in request.resources {
            let address = item.resource.address.clone();
            match item.resource.kind.as_str() {
                MACHINE_CONFIG => {
                    let provider = self.clone();
                    tasks.spawn(async move {
                        let outcome = provider.read_machine_config(&item.prior, &address).await;
                        ReadResult { address, outcome }
                    });
                }
                SECRETS => {
                    let outcome = match ClusterSecrets::from_attributes(&item.prior) {
                        Ok(_) => ReadOutcome::Found(item.prior),
                        Err(error) => ReadOutcome::Failed(provider_error("read", &address, error)),
                    };
                    results.push(ReadResult { address, outcome });
                }
                // Bootstrap and kubeconfig are facts recorded at creation: etcd cannot be
                // un-bootstrapped, and a kubeconfig is not read back from the node.
                BOOTSTRAP | KUBECONFIG => results.push(ReadResult {
                    address,
                    outcome: ReadOutcome::Found(item.prior),
                }),
                other => results.push(ReadResult {
                    outcome: ReadOutcome::Failed(invalid(
                        "read",
                        &address,
                        format!("unknown resource type `{other}`"),
                    )),
                    address,
                }),
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(error) => {
                    return Err(ProviderError::new(
                        ErrorKind::Other,
                        "read",
                        "talos",
                        format!("a read task failed: {error}"),
                    ));
                }
            }
        }
        Ok(ReadResponse { results })
    }

    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        match request.resource.kind.as_str() {
            MACHINE_CONFIG => self.plan_machine_config(request),
            // Never a second bootstrap: once done, the recorded node stands, whatever
            // the configuration now names.
            BOOTSTRAP if request.prior.is_some() => Ok(PlanResponse {
                planned: request.prior.cloned().unwrap_or_default(),
                requires_replace: Vec::new(),
                create_before_destroy: false,
            }),
            BOOTSTRAP => Ok(bootstrap_schema().default_plan(None, request.desired)),
            SECRETS => Ok(secrets_schema().default_plan(request.prior, request.desired)),
            KUBECONFIG => Ok(kubeconfig_schema().default_plan(request.prior, request.desired)),
            other => Err(invalid(
                "plan",
                &request.resource.address,
                format!("unknown resource type `{other}`"),
            )),
        }
    }

    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let address = request.resource.address.clone();
        match request.resource.kind.as_str() {
            SECRETS => {
                // RSA-4096 generation takes seconds: off the async runtime.
                let secrets = tokio::task::spawn_blocking(ClusterSecrets::generate)
                    .await
                    .map_err(|e| {
                        ProviderError::new(ErrorKind::Other, "create", &address, e.to_string())
                    })?
                    .map_err(|e| provider_error("create", &address, e))?;
                let mut attributes = request.planned.clone();
                attributes.extend(secrets.to_attributes());
                Ok(CreateResponse {
                    id: secrets_id(&secrets),
                    attributes,
                })
            }
            MACHINE_CONFIG => self.create_machine_config(request).await,
            BOOTSTRAP => self.create_bootstrap(request).await,
            KUBECONFIG => {
                let attributes = self
                    .fetch_kubeconfig(&request.planned, "create", &address)
                    .await?;
                let endpoint =
                    Reader::new(&request.planned, "create", &address).string("endpoint")?;
                Ok(CreateResponse {
                    id: format!("kubeconfig@{endpoint}"),
                    attributes,
                })
            }
            other => Err(invalid(
                "create",
                &address,
                format!("unknown resource type `{other}`"),
            )),
        }
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let address = request.resource.address.clone();
        match request.resource.kind.as_str() {
            SECRETS => {
                // Secrets are never regenerated: keep every secret from prior state.
                let mut attributes = request.planned.clone();
                for name in secret::ALL {
                    if let Some(value) = request.prior.get(name) {
                        attributes.insert(name.to_string(), value.clone());
                    }
                }
                Ok(UpdateResponse { attributes })
            }
            MACHINE_CONFIG => self.update_machine_config(request).await,
            BOOTSTRAP => Ok(UpdateResponse {
                attributes: request.prior,
            }),
            KUBECONFIG => Ok(UpdateResponse {
                attributes: self
                    .fetch_kubeconfig(&request.planned, "update", &address)
                    .await?,
            }),
            other => Err(invalid(
                "update",
                &address,
                format!("unknown resource type `{other}`"),
            )),
        }
    }

    /// A machine config's delete takes its node out of the cluster before the machine
    /// goes (see [`crate::removal`]): drained, out of etcd, wiped and powered off. In
    /// a teardown (`destroy`) every node goes at once, so nothing is left to keep
    /// healthy and it only forgets. Everything else only forgets: the secrets live only
    /// in state, etcd cannot be un-bootstrapped, and a kubeconfig has nothing remote.
    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError> {
        let address = request.resource.address.as_str();
        if request.resource.kind != MACHINE_CONFIG || request.teardown {
            info!(%address, "forgetting (nothing to remove on the node)");
            return Ok(());
        }
        let inputs = machine_config_inputs(&request.prior, "delete", address)?;
        // The cluster VIP is held by a healthy control plane, and apid answers on it.
        let peers = match inputs.renderer.vip() {
            Some(vip) if vip.is_ipv6() => vec![format!("[{vip}]:{DEFAULT_PORT}")],
            Some(vip) => vec![format!("{vip}:{DEFAULT_PORT}")],
            None => Vec::new(),
        };
        let options = RemovalOptions {
            timeout: DEFAULT_REMOVAL_TIMEOUT,
            backoff: Backoff::default(),
            connect: self.connect,
            peers,
        };
        let removal = remove_node(
            &inputs.talos_endpoint,
            &inputs.node.hostname,
            inputs.node.role,
            &inputs.identity,
            &options,
        )
        .await
        .map_err(|e| provider_error("delete", address, e))?;
        match removal {
            Removal::Reset => {
                info!(%address, "the node left its cluster: drained, out of etcd, wiped, powered off")
            }
            Removal::Unreachable(why) => {
                warn!(%address, %why, "the worker did not answer; it is removed with its machine")
            }
            Removal::AlreadyLeft => {
                info!(%address, "the control plane had left etcd already (an earlier removal reset it)")
            }
        }
        remove_node_object(&request.prior, &inputs.node.hostname, address).await;
        Ok(())
    }

    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError> {
        let address = request.resource.address.as_str();
        match request.resource.kind.as_str() {
            // The id is the path of a talosctl `secrets.yaml`.
            SECRETS => {
                let text = std::fs::read_to_string(&request.id).map_err(|e| {
                    invalid(
                        "import",
                        address,
                        format!("cannot read secrets file `{}`: {e}", request.id),
                    )
                })?;
                let secrets = ClusterSecrets::from_talosctl_yaml(&text)
                    .map_err(|e| provider_error("import", address, e))?;
                Ok(ImportResponse {
                    attributes: secrets.to_attributes(),
                })
            }
            // The id is the endpoint of the node etcd was bootstrapped on.
            BOOTSTRAP => Ok(ImportResponse {
                attributes: serde_json::Map::from_iter([
                    ("endpoint".to_string(), json!(request.id)),
                    ("bootstrapped_node".to_string(), json!(request.id)),
                    ("already_bootstrapped".to_string(), json!(true)),
                ]),
            }),
            MACHINE_CONFIG | KUBECONFIG => Err(invalid(
                "import",
                address,
                format!(
                    "`{}` cannot be imported: declare it and apply (applying the same config is a no-op on the node)",
                    request.resource.kind
                ),
            )),
            other => Err(invalid(
                "import",
                address,
                format!("unknown resource type `{other}`"),
            )),
        }
    }
}
