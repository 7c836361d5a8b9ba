//! The InfraFlux provider: resource types `kubernetes_platform`,
//! `kubernetes_namespace` and `kubernetes_handoff`. Attribute layout: README.md.
//!
//! create and update render the manifests, apply what differs from the live objects
//! (phase order, CRDs Established first) and wait until the objects are Current;
//! update also deletes objects the previous attributes rendered and the new ones do
//! not. read reports drift (an object missing or changed) in the computed attribute
//! `drift`, which planning clears, so a drifted resource plans as an update.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use infraflux_provider::signal::RenderError;
use infraflux_provider::{
    AttributeSchema, Attributes, CreateRequest, CreateResponse, DeleteRequest, Diagnostic,
    ErrorKind, ImportRequest, ImportResponse, PlanRequest, PlanResponse, Provider, ProviderError,
    ReadOutcome, ReadRequest, ReadResponse, ReadResult, ResourceRef, ResourceSchema, Severity,
    UpdateRequest, UpdateResponse, ValidateRequest, ValidateResponse,
};

use crate::api::{ApiError, ApplyOptions, KubeApi};
use crate::apply::{self, apply_manifests, delete_objects, is_up_to_date};
use crate::client::{ClientOptions, KubeClient, Kubeconfig};
use crate::inputs::{self, HandoffInputs, InputError, NamespaceInputs, PlatformInputs, Service};
use crate::object::{ObjectRef, recorded_objects};
use crate::readiness::Expectation;
use crate::render;
use crate::upstream::Sources;

pub use crate::releases::{LoadError, Releases, release_files};
use crate::wait::{WaitOptions, wait_for};

pub const PLATFORM: &str = "kubernetes_platform";
pub const NAMESPACE: &str = "kubernetes_namespace";
pub const HANDOFF: &str = "kubernetes_handoff";

/// Opens a [`KubeApi`] for a kubeconfig; tests swap in fakes.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self, kubeconfig: &Kubeconfig) -> Result<Arc<dyn KubeApi>, ApiError>;

    /// Open the API a kubeconfig document names (the ready signal's comes from state as
    /// text). The error says what failed without quoting the document (it holds a key).
    async fn open(&self, kubeconfig: &str) -> Result<Arc<dyn KubeApi>, String> {
        let kubeconfig = Kubeconfig::new(kubeconfig.to_string())
            .map_err(|e| format!("the kubeconfig in state {e}"))?;
        self.connect(&kubeconfig)
            .await
            .map_err(|e| format!("cannot connect to the cluster API: {e}"))
    }
}

/// Connects with the `kube` client.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeConnector {
    pub options: ClientOptions,
}

#[async_trait]
impl Connector for KubeConnector {
    async fn connect(&self, kubeconfig: &Kubeconfig) -> Result<Arc<dyn KubeApi>, ApiError> {
        Ok(Arc::new(KubeClient::new(kubeconfig, self.options).await?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Waiting for CRDs to be Established.
    pub crd_wait: WaitOptions,
    /// Waiting for everything applied to become Current (Applications: Synced and
    /// Healthy at their revision).
    pub ready_wait: WaitOptions,
    /// Where upstream release files (ArgoCD's install manifests) are read from.
    pub upstream: Sources,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            crd_wait: WaitOptions {
                timeout: std::time::Duration::from_secs(120),
                interval: std::time::Duration::from_secs(2),
            },
            ready_wait: WaitOptions::default(),
            upstream: Sources::default(),
        }
    }
}

pub struct KubernetesProvider {
    connector: Arc<dyn Connector>,
    options: ProviderOptions,
}

impl KubernetesProvider {
    pub fn new(options: ProviderOptions) -> Self {
        Self::with_connector(Arc::new(KubeConnector::default()), options)
    }

    pub fn with_connector(connector: Arc<dyn Connector>, options: ProviderOptions) -> Self {
        KubernetesProvider { connector, options }
    }
}

// ---- rendering per resource type ---------------------------------------------------------

/// What a resource renders to and waits for.
pub struct Rendered {
    pub manifests: Vec<Value>,
    /// The readiness expectation per object (the handoff's revision).
    pub expectation: Expectation,
    pub force: bool,
    /// The provider's ID for the resource.
    pub id: String,
}

/// Render a resource's manifests from its attributes and the release files it installs
/// (read with [`Releases::load`]), without a cluster.
pub fn render_resource(
    kind: &str,
    attributes: &Attributes,
    releases: &Releases,
) -> Result<Rendered, InputError> {
    match kind {
        PLATFORM => {
            let inputs = PlatformInputs::parse(attributes)?;
            let release = match inputs.release_file()? {
                Some(file) => releases.get(file),
                None => None,
            };
            Ok(Rendered {
                manifests: render::platform(&inputs, release)?,
                expectation: Expectation::default(),
                force: inputs.force_conflicts,
                id: format!("platform/{}", inputs.service.key()),
            })
        }
        NAMESPACE => {
            let inputs = NamespaceInputs::parse(attributes)?;
            Ok(Rendered {
                manifests: render::environment_namespace(&inputs),
                expectation: Expectation::default(),
                force: attributes.get("force_conflicts") == Some(&json!(true)),
                id: format!("namespace/{}", inputs.name),
            })
        }
        HANDOFF => {
            let inputs = HandoffInputs::parse(attributes)?;
            Ok(Rendered {
                manifests: render::handoff(&inputs),
                expectation: Expectation {
                    revision: Some(inputs.revision.clone()),
                },
                force: false,
                id: format!("handoff/{}/{}", inputs.argocd_namespace, inputs.application),
            })
        }
        other => Err(InputError {
            attribute: "type".into(),
            message: format!("unknown resource type `{other}`"),
        }),
    }
}

fn object_json(object: &ObjectRef) -> Value {
    json!({"apiVersion": object.api_version, "kind": object.kind,
        "namespace": object.namespace, "name": object.name})
}

/// The Application through which ArgoCD takes over a service InfraFlux installs before
/// it (cilium), for a `kubernetes_platform` resource; `None` for anything else.
pub fn adoption_application(kind: &str, attributes: &Attributes) -> Option<ObjectRef> {
    if kind != PLATFORM {
        return None;
    }
    let inputs = PlatformInputs::parse(attributes).ok()?;
    if inputs.service != Service::Cilium {
        return None;
    }
    let chart = render::argocd::chart(inputs.service)?;
    Some(ObjectRef::new(
        render::argocd::API_VERSION,
        "Application",
        Some(&inputs.argocd_namespace),
        chart.release,
    ))
}

/// The adoption Application, when it exists: ArgoCD owns the service, and InfraFlux
/// neither applies nor refreshes what it installed of it.
async fn owned_by_argocd(
    api: &dyn KubeApi,
    kind: &str,
    attributes: &Attributes,
) -> Result<Option<ObjectRef>, ApiError> {
    let Some(application) = adoption_application(kind, attributes) else {
        return Ok(None);
    };
    Ok(api.get(&application).await?.map(|_| application))
}

// ---- errors ---------------------------------------------------------------------------------

fn input_error(operation: &str, resource: &ResourceRef, error: InputError) -> ProviderError {
    ProviderError::new(
        ErrorKind::InvalidInput,
        operation,
        &resource.address,
        error.to_string(),
    )
}

/// The error and its sources, joined: ProviderError carries a message, not a chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn api_kind(error: &ApiError) -> ErrorKind {
    match error {
        ApiError::Conflict { .. } => ErrorKind::Conflict,
        ApiError::Status {
            status: 401 | 403, ..
        } => ErrorKind::Permission,
        ApiError::Status { status: 404, .. } => ErrorKind::NotFound,
        ApiError::Status {
            status: 400 | 422, ..
        }
        | ApiError::Invalid(_)
        | ApiError::UnknownKind { .. } => ErrorKind::InvalidInput,
        error if error.is_retryable() => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

fn apply_error(operation: &str, resource: &ResourceRef, error: apply::Error) -> ProviderError {
    let kind = match &error {
        apply::Error::Read { source, .. }
        | apply::Error::Apply { source, .. }
        | apply::Error::Delete { source, .. }
        | apply::Error::Discovery(source) => api_kind(source),
        apply::Error::Identity => ErrorKind::InvalidInput,
        apply::Error::Crds(_) | apply::Error::Wait(_) => ErrorKind::Other,
    };
    ProviderError::new(kind, operation, &resource.address, chain(&error))
}

fn load_error(operation: &str, resource: &ResourceRef, error: LoadError) -> ProviderError {
    let help = error.help();
    let error = ProviderError::new(error.kind(), operation, &resource.address, chain(&error));
    match help {
        Some(help) => error.with_help(help),
        None => error,
    }
}

fn connect_error(operation: &str, resource: &ResourceRef, error: ApiError) -> ProviderError {
    ProviderError::new(
        api_kind(&error),
        operation,
        &resource.address,
        chain(&error),
    )
}

// ---- operations ----------------------------------------------------------------------------

impl KubernetesProvider {
    /// Read the release files a resource installs, saying loudly when one is simulated.
    async fn releases(&self, kind: &str, attributes: &Attributes) -> Result<Releases, LoadError> {
        let releases = Releases::load(&self.options.upstream, kind, attributes).await?;
        if let Some(reason) = releases.simulated() {
            warn_simulated(reason);
        }
        Ok(releases)
    }

    /// Render a resource, reading the release files it installs first.
    async fn render(
        &self,
        operation: &str,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Result<Rendered, ProviderError> {
        let releases = self
            .releases(&resource.kind, attributes)
            .await
            .map_err(|e| load_error(operation, resource, e))?;
        render_resource(&resource.kind, attributes, &releases)
            .map_err(|e| input_error(operation, resource, e))
    }

    async fn connect(
        &self,
        operation: &str,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Result<Arc<dyn KubeApi>, ProviderError> {
        let kubeconfig =
            inputs::kubeconfig(attributes).map_err(|e| input_error(operation, resource, e))?;
        self.connector
            .connect(&kubeconfig)
            .await
            .map_err(|e| connect_error(operation, resource, e))
    }

    /// Apply, prune what the previous attributes rendered and these do not, wait.
    async fn converge(
        &self,
        operation: &str,
        resource: &ResourceRef,
        planned: &Attributes,
        prior: Option<&Attributes>,
    ) -> Result<(String, Attributes), ProviderError> {
        let rendered = self.render(operation, resource, planned).await?;
        let api = self.connect(operation, resource, planned).await?;
        if let Some(application) = owned_by_argocd(api.as_ref(), &resource.kind, planned)
            .await
            .map_err(|e| connect_error(operation, resource, e))?
        {
            tracing::info!(
                address = %resource.address,
                "ArgoCD owns this service ({application}): InfraFlux applies nothing of it; \
                 a change reaches it through that Application"
            );
            // What InfraFlux applied before stays recorded (deleting the resource removes
            // it); nothing new was applied.
            let objects = match prior {
                Some(prior) => recorded_objects(prior),
                None => rendered
                    .manifests
                    .iter()
                    .filter_map(ObjectRef::from_manifest)
                    .collect(),
            };
            let mut attributes = planned.clone();
            attributes.insert(
                "objects".into(),
                Value::Array(objects.iter().map(object_json).collect()),
            );
            attributes.insert("drift".into(), json!([]));
            return Ok((rendered.id, attributes));
        }
        let options = ApplyOptions {
            force: rendered.force,
        };
        let report = apply_manifests(
            api.as_ref(),
            &rendered.manifests,
            options,
            self.options.crd_wait,
        )
        .await
        .map_err(|e| apply_error(operation, resource, e))?;
        tracing::info!(
            address = %resource.address,
            applied = report.applied.len(),
            unchanged = report.unchanged.len(),
            "applied"
        );
        let objects: Vec<ObjectRef> = rendered
            .manifests
            .iter()
            .filter_map(ObjectRef::from_manifest)
            .collect();
        if let Some(prior) = prior {
            let stale: Vec<ObjectRef> = recorded_objects(prior)
                .into_iter()
                .filter(|o| !objects.contains(o))
                .collect();
            delete_objects(api.as_ref(), &stale)
                .await
                .map_err(|e| apply_error(operation, resource, e))?;
        }
        let targets: Vec<(ObjectRef, Expectation)> = objects
            .iter()
            .map(|o| (o.clone(), rendered.expectation.clone()))
            .collect();
        wait_for(api.as_ref(), &targets, self.options.ready_wait)
            .await
            .map_err(|e| apply_error(operation, resource, apply::Error::Wait(e)))?;
        let mut attributes = planned.clone();
        attributes.insert(
            "objects".into(),
            Value::Array(objects.iter().map(object_json).collect()),
        );
        attributes.insert("drift".into(), json!([]));
        Ok((rendered.id, attributes))
    }
}

fn schema(kind: &str, inputs: &[&str], force_new: &[&str]) -> ResourceSchema {
    let mut attributes: Vec<AttributeSchema> = inputs
        .iter()
        .map(|name| {
            let attribute = AttributeSchema::input(*name);
            if force_new.contains(name) {
                attribute.force_new()
            } else {
                attribute
            }
        })
        .collect();
    attributes.push(AttributeSchema::input("kubeconfig").sensitive());
    attributes.push(AttributeSchema::computed("objects"));
    attributes.push(AttributeSchema::computed("drift"));
    ResourceSchema::new(kind, attributes)
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn schemas(&self) -> Vec<ResourceSchema> {
        vec![
            schema(
                PLATFORM,
                &[
                    "service",
                    "version",
                    "values",
                    "namespace",
                    "environment",
                    "workloads",
                    "argocd_namespace",
                    "adopt",
                    "force_conflicts",
                    "ha",
                ],
                &["service", "namespace"],
            ),
            schema(
                NAMESPACE,
                &[
                    "name",
                    "environment",
                    "labels",
                    "pod_security",
                    "default_deny",
                    "quota",
                    "workloads",
                    "argocd_namespace",
                    "force_conflicts",
                ],
                &["name"],
            ),
            schema(
                HANDOFF,
                &[
                    "environment",
                    "project",
                    "application",
                    "argocd_namespace",
                    "repository",
                    "revision",
                    "path",
                    "destination_namespace",
                    "automated",
                    "sync_wave",
                    "pin_revision",
                ],
                &["project", "application", "argocd_namespace"],
            ),
        ]
    }

    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        let mut diagnostics = Vec::new();
        // No I/O here: the release files are only checked to be pinned (plan reads them);
        // a resource that installs none is rendered whole.
        let checked = release_files(&request.resource.kind, &request.desired).and_then(|files| {
            if files.is_empty() {
                render_resource(
                    &request.resource.kind,
                    &request.desired,
                    &Releases::default(),
                )
                .map(drop)
            } else {
                Ok(())
            }
        });
        if let Err(error) = checked {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                attribute: Some(error.attribute.clone()),
                summary: error.message.clone(),
                detail: None,
            });
        }
        if inputs::kubeconfig(&request.desired).is_err()
            && !request
                .desired
                .get("kubeconfig")
                .is_some_and(infraflux_provider::contains_unknown)
        {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                attribute: Some("kubeconfig".into()),
                summary: "a kubeconfig document is required".into(),
                detail: Some("pass the Talos kubeconfig resource's `kubeconfig` attribute".into()),
            });
        }
        ValidateResponse { diagnostics }
    }

    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        let schema = self
            .schemas()
            .into_iter()
            .find(|s| s.kind == request.resource.kind)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    "plan",
                    &request.resource.address,
                    format!("unknown resource type `{}`", request.resource.kind),
                )
            })?;
        // The release files a resource installs are read (downloaded into the cache when
        // needed) and checked against their digests now, so that a missing or altered
        // file stops the plan, not the apply halfway.
        self.releases(&request.resource.kind, &request.desired)
            .await
            .map_err(|e| load_error("plan", &request.resource, e))?;
        let mut plan = schema.default_plan(request.prior, request.desired);
        // Drift found by read is repaired by applying: plan it away.
        if request.prior.is_some_and(|p| {
            p.get("drift")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty())
        }) && plan.requires_replace.is_empty()
        {
            plan.planned.insert("drift".into(), json!([]));
        }
        Ok(plan)
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError> {
        // One connection per kubeconfig (per cluster), not per resource.
        let mut clients: BTreeMap<String, Arc<dyn KubeApi>> = BTreeMap::new();
        let mut results = Vec::new();
        for item in request.resources {
            let address = item.resource.address.clone();
            let outcome = self
                .read_one(&item.resource, &item.prior, &mut clients)
                .await;
            results.push(ReadResult { address, outcome });
        }
        Ok(ReadResponse { results })
    }

    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let (id, attributes) = self
            .converge("create", &request.resource, &request.planned, None)
            .await?;
        Ok(CreateResponse { id, attributes })
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let (_, attributes) = self
            .converge(
                "update",
                &request.resource,
                &request.planned,
                Some(&request.prior),
            )
            .await?;
        Ok(UpdateResponse { attributes })
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError> {
        let api = self
            .connect("delete", &request.resource, &request.prior)
            .await?;
        let mut objects = recorded_objects(&request.prior);
        if objects.is_empty()
            && let Ok(rendered) = self
                .render("delete", &request.resource, &request.prior)
                .await
        {
            objects = rendered
                .manifests
                .iter()
                .filter_map(ObjectRef::from_manifest)
                .collect();
        }
        delete_objects(api.as_ref(), &objects)
            .await
            .map_err(|e| apply_error("delete", &request.resource, e))
    }

    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError> {
        Err(ProviderError::new(
            ErrorKind::InvalidInput,
            "import",
            &request.resource.address,
            format!(
                "`{}` cannot be imported: its attributes come from the configuration; \
                 apply adopts existing objects (server-side apply) instead",
                request.id
            ),
        ))
    }
}

impl KubernetesProvider {
    async fn read_one(
        &self,
        resource: &ResourceRef,
        prior: &Attributes,
        clients: &mut BTreeMap<String, Arc<dyn KubeApi>>,
    ) -> ReadOutcome {
        let kubeconfig = match inputs::kubeconfig(prior) {
            Ok(kubeconfig) => kubeconfig,
            Err(error) => return ReadOutcome::Failed(input_error("read", resource, error)),
        };
        let api = match clients.get(kubeconfig.expose()) {
            Some(api) => api.clone(),
            None => match self.connector.connect(&kubeconfig).await {
                Ok(api) => {
                    clients.insert(kubeconfig.expose().to_string(), api.clone());
                    api
                }
                Err(error) => return ReadOutcome::Failed(connect_error("read", resource, error)),
            },
        };
        // A service ArgoCD has adopted is ArgoCD's to refresh: its objects changing (as
        // ArgoCD syncs them) is no drift of InfraFlux's.
        match owned_by_argocd(api.as_ref(), &resource.kind, prior).await {
            Ok(Some(_)) => {
                let mut attributes = prior.clone();
                attributes.insert("drift".into(), json!([]));
                return ReadOutcome::Found(attributes);
            }
            Ok(None) => {}
            Err(error) => return ReadOutcome::Failed(connect_error("read", resource, error)),
        }
        let rendered = match self.render("read", resource, prior).await {
            Ok(rendered) => rendered,
            Err(error) => return ReadOutcome::Failed(error),
        };
        let mut drift = Vec::new();
        let mut found = 0;
        for manifest in &rendered.manifests {
            let Some(object) = ObjectRef::from_manifest(manifest) else {
                continue;
            };
            match api.get(&object).await {
                Ok(Some(live)) => {
                    found += 1;
                    if !is_up_to_date(manifest, &live) {
                        drift.push(json!(format!("{object} differs")));
                    }
                }
                Ok(None) => drift.push(json!(format!("{object} is missing"))),
                Err(error) => return ReadOutcome::Failed(connect_error("read", resource, error)),
            }
        }
        if found == 0 {
            return ReadOutcome::Gone;
        }
        let mut attributes = prior.clone();
        attributes.insert("drift".into(), Value::Array(drift));
        ReadOutcome::Found(attributes)
    }
}

// ---- the ready signal and rendering, for the engine's bootstrap ---------------------------

/// Said on stderr (through the log, at warning level: shown without `-v`) once per
/// process and reason when a simulated install is rendered: the lab must never pass for
/// a real install.
fn warn_simulated(reason: &str) {
    static WARNED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    if !WARNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(reason.to_string())
    {
        return;
    }
    tracing::warn!(
        "SIMULATED INSTALL: {reason}. The lab renders only InfraFlux's own objects for it and \
         its simulated cluster plays the rest; give the lab the real file with --manifests DIR \
         (a mirror laid out as argo-cd-<version>/install.yaml) or network access"
    );
}

#[async_trait]
impl infraflux_provider::signal::ClusterSignal for KubernetesProvider {
    async fn ready_signal(
        &self,
        request: infraflux_provider::signal::ReadyRequest,
    ) -> Result<crate::signal::ReadyReport, String> {
        let mut releases = Releases::default();
        for resource in &request.resources {
            let loaded = self
                .releases(&resource.kind, &resource.attributes)
                .await
                .map_err(|e| format!("cannot tell what ready means: {e}"))?;
            releases.extend(loaded);
        }
        let expectations = crate::signal::Expectations::from_resources(
            request.nodes,
            request
                .resources
                .iter()
                .map(|r| (r.kind.as_str(), &r.attributes)),
            &releases,
        )
        .map_err(|e| format!("cannot tell what ready means: {e}"))?;
        let api = self.connector.open(&request.kubeconfig).await?;
        let options = WaitOptions {
            timeout: request.timeout,
            interval: request.interval,
        };
        Ok(crate::signal::wait(api.as_ref(), &expectations, options).await)
    }

    fn is_handoff(&self, kind: &str) -> bool {
        kind == HANDOFF
    }

    async fn render_manifests(
        &self,
        kind: &str,
        attributes: &Attributes,
    ) -> Result<Vec<infraflux_provider::signal::RenderedManifest>, RenderError> {
        let releases = self
            .releases(kind, attributes)
            .await
            .map_err(|e| RenderError {
                message: e.to_string(),
                help: e.help(),
            })?;
        let rendered = render_resource(kind, attributes, &releases)
            .map_err(|e| RenderError::new(e.to_string()))?;
        Ok(rendered
            .manifests
            .iter()
            .map(|manifest| {
                let file_stem = ObjectRef::from_manifest(manifest)
                    .map(|o| o.file_stem())
                    .unwrap_or_else(|| "object".into());
                // Written so that Kubernetes (YAML 1.1) reads back what was rendered.
                let yaml = crate::render::kubernetes_yaml::to_string(manifest);
                infraflux_provider::signal::RenderedManifest { file_stem, yaml }
            })
            .collect())
    }
}
