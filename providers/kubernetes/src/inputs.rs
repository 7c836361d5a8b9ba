//! Resource attributes (JSON from the engine) → typed inputs for rendering. The layout
//! is documented in the crate's README; every problem names the attribute it is about.

use serde_json::{Map, Value};

use infraflux_provider::Attributes;

use crate::upstream::ReleaseFile;

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute `{attribute}`: {message}")]
pub struct InputError {
    pub attribute: String,
    pub message: String,
}

fn problem(attribute: &str, message: impl Into<String>) -> InputError {
    InputError {
        attribute: attribute.to_string(),
        message: message.into(),
    }
}

pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";

// ---- scalar helpers ---------------------------------------------------------------------

pub(crate) fn required_str<'a>(
    attributes: &'a Attributes,
    name: &str,
) -> Result<&'a str, InputError> {
    match attributes.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(problem(name, "must not be empty")),
        Some(_) => Err(problem(name, "must be a string")),
        None => Err(problem(name, "is required")),
    }
}

fn optional_str<'a>(attributes: &'a Attributes, name: &str) -> Result<Option<&'a str>, InputError> {
    match attributes.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(problem(name, "must be a string")),
    }
}

fn optional_bool(attributes: &Attributes, name: &str) -> Result<Option<bool>, InputError> {
    match attributes.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(problem(name, "must be true or false")),
    }
}

fn optional_object<'a>(
    attributes: &'a Attributes,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, InputError> {
    match attributes.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(problem(name, "must be an object")),
    }
}

fn optional_u32(attributes: &Attributes, name: &str) -> Result<Option<u32>, InputError> {
    match attributes.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| problem(name, "must be a non-negative integer")),
    }
}

/// A DNS-1123 label: namespaces and most object names.
pub(crate) fn check_label(attribute: &str, name: &str) -> Result<(), InputError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(problem(
            attribute,
            format!(
                "`{name}` is not a valid name (lower-case letters, digits and `-`, at most 63)"
            ),
        ))
    }
}

// ---- quantities ---------------------------------------------------------------------------

/// CPU as a Kubernetes quantity. A string is taken as written (`500m`, `2`); a number is
/// millicores, as the engine's model serialises `MilliCpu`.
pub(crate) fn cpu(attribute: &str, value: &Value) -> Result<String, InputError> {
    match value {
        Value::Number(n) => {
            let millis = n
                .as_u64()
                .ok_or_else(|| problem(attribute, "millicores must be a non-negative integer"))?;
            Ok(if millis % 1000 == 0 {
                (millis / 1000).to_string()
            } else {
                format!("{millis}m")
            })
        }
        Value::String(text) if is_quantity(text, &["m"]) => Ok(text.clone()),
        _ => Err(problem(
            attribute,
            "must be CPU as a quantity (`500m`, `2`) or millicores",
        )),
    }
}

/// Memory as a Kubernetes quantity. A string is taken as written (`512Mi`); a number is
/// bytes, as the engine's model serialises `Bytes`, written with the largest binary
/// suffix that divides it.
pub(crate) fn memory(attribute: &str, value: &Value) -> Result<String, InputError> {
    match value {
        Value::Number(n) => {
            let bytes = n
                .as_u64()
                .ok_or_else(|| problem(attribute, "bytes must be a non-negative integer"))?;
            for (suffix, size) in [
                ("Ti", 1u64 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ] {
                if bytes >= size && bytes % size == 0 {
                    return Ok(format!("{}{suffix}", bytes / size));
                }
            }
            Ok(bytes.to_string())
        }
        Value::String(text)
            if is_quantity(
                text,
                &[
                    "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
                ],
            ) =>
        {
            Ok(text.clone())
        }
        _ => Err(problem(
            attribute,
            "must be memory as a quantity (`512Mi`, `2Gi`) or bytes",
        )),
    }
}

fn is_quantity(text: &str, suffixes: &[&str]) -> bool {
    let number = suffixes
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
        .unwrap_or(text);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

// ---- shared inputs ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceList {
    pub cpu: String,
    pub memory: String,
}

impl ResourceList {
    fn parse(attribute: &str, value: &Value) -> Result<Self, InputError> {
        let object = value
            .as_object()
            .ok_or_else(|| problem(attribute, "must be an object with cpu and memory"))?;
        let cpu_path = format!("{attribute}.cpu");
        let memory_path = format!("{attribute}.memory");
        Ok(ResourceList {
            cpu: cpu(
                &cpu_path,
                object
                    .get("cpu")
                    .ok_or_else(|| problem(&cpu_path, "is required"))?,
            )?,
            memory: memory(
                &memory_path,
                object
                    .get("memory")
                    .ok_or_else(|| problem(&memory_path, "is required"))?,
            )?,
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"cpu": self.cpu, "memory": self.memory})
    }
}

/// The environment's workload policy (`workloads:` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadPolicy {
    pub replicas: u32,
    pub anti_affinity: bool,
    pub requests: ResourceList,
    pub limits: ResourceList,
}

impl Default for WorkloadPolicy {
    /// The shipped defaults (`config/defaults/security.yaml`): one replica, small.
    fn default() -> Self {
        WorkloadPolicy {
            replicas: 1,
            anti_affinity: false,
            requests: ResourceList {
                cpu: "100m".into(),
                memory: "128Mi".into(),
            },
            limits: ResourceList {
                cpu: "200m".into(),
                memory: "256Mi".into(),
            },
        }
    }
}

impl WorkloadPolicy {
    /// `workloads: {replicas, anti_affinity, requests: {cpu, memory}, limits: {…}}`;
    /// `resources: {requests, limits}` (the configuration's own nesting) is accepted too.
    fn parse(attributes: &Attributes) -> Result<Option<Self>, InputError> {
        let Some(workloads) = optional_object(attributes, "workloads")? else {
            return Ok(None);
        };
        let defaults = WorkloadPolicy::default();
        let resources = workloads.get("resources").and_then(Value::as_object);
        let list = |name: &str, default: &ResourceList| -> Result<ResourceList, InputError> {
            match workloads
                .get(name)
                .or_else(|| resources.and_then(|r| r.get(name)))
            {
                Some(value) => ResourceList::parse(&format!("workloads.{name}"), value),
                None => Ok(default.clone()),
            }
        };
        let replicas = match workloads.get("replicas") {
            None => defaults.replicas,
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| problem("workloads.replicas", "must be an integer of at least 1"))?,
        };
        let anti_affinity = match workloads.get("anti_affinity") {
            None => defaults.anti_affinity,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(problem("workloads.anti_affinity", "must be true or false")),
        };
        Ok(Some(WorkloadPolicy {
            replicas,
            anti_affinity,
            requests: list("requests", &defaults.requests)?,
            limits: list("limits", &defaults.limits)?,
        }))
    }

    /// Highly available: more than one replica, spread over nodes.
    pub fn is_highly_available(&self) -> bool {
        self.replicas > 1
    }
}

// ---- kubernetes_namespace -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSecurity {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Privileged => "privileged",
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceInputs {
    pub name: String,
    pub environment: String,
    pub pod_security: PodSecurity,
    pub default_deny: bool,
    pub quota: Option<Quota>,
    pub workloads: WorkloadPolicy,
    pub argocd_namespace: String,
    /// Extra labels, added to the ones InfraFlux sets.
    pub labels: Map<String, Value>,
}

impl NamespaceInputs {
    pub fn parse(attributes: &Attributes) -> Result<Self, InputError> {
        let name = required_str(attributes, "name")?.to_string();
        check_label("name", &name)?;
        let environment = optional_str(attributes, "environment")?
            .unwrap_or(&name)
            .to_string();
        let pod_security = match optional_str(attributes, "pod_security")?.unwrap_or("restricted") {
            "privileged" => PodSecurity::Privileged,
            "baseline" => PodSecurity::Baseline,
            "restricted" => PodSecurity::Restricted,
            other => {
                return Err(problem(
                    "pod_security",
                    format!("`{other}` is not one of privileged, baseline, restricted"),
                ));
            }
        };
        let quota = match optional_object(attributes, "quota")? {
            None => None,
            Some(quota) => Some(Quota {
                cpu: cpu(
                    "quota.cpu",
                    quota
                        .get("cpu")
                        .ok_or_else(|| problem("quota.cpu", "is required"))?,
                )?,
                memory: memory(
                    "quota.memory",
                    quota
                        .get("memory")
                        .ok_or_else(|| problem("quota.memory", "is required"))?,
                )?,
                pods: quota
                    .get("pods")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| problem("quota.pods", "must be a non-negative integer"))?,
            }),
        };
        let labels = optional_object(attributes, "labels")?
            .cloned()
            .unwrap_or_default();
        if let Some((key, _)) = labels.iter().find(|(_, v)| !v.is_string()) {
            return Err(problem(&format!("labels.{key}"), "must be a string"));
        }
        Ok(NamespaceInputs {
            name,
            environment,
            pod_security,
            default_deny: optional_bool(attributes, "default_deny")?.unwrap_or(true),
            quota,
            workloads: WorkloadPolicy::parse(attributes)?.unwrap_or_default(),
            argocd_namespace: argocd_namespace(attributes)?,
            labels,
        })
    }
}

/// Names of the Jobs among the recorded objects.
fn recorded_jobs(attributes: &Attributes) -> Vec<String> {
    crate::object::recorded_objects(attributes)
        .into_iter()
        .filter(|object| object.kind == "Job")
        .map(|object| object.name)
        .collect()
}

fn argocd_namespace(attributes: &Attributes) -> Result<String, InputError> {
    let namespace = optional_str(attributes, "argocd_namespace")?
        .unwrap_or(DEFAULT_ARGOCD_NAMESPACE)
        .to_string();
    check_label("argocd_namespace", &namespace)?;
    Ok(namespace)
}

// ---- kubernetes_platform ------------------------------------------------------------------

/// The platform services InfraFlux knows (the keys under `platform:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Cilium,
    Argocd,
    CertManager,
    Monitoring,
    ExternalDns,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Cilium,
        Service::Argocd,
        Service::CertManager,
        Service::Monitoring,
        Service::ExternalDns,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Service::Cilium => "cilium",
            Service::Argocd => "argocd",
            Service::CertManager => "cert_manager",
            Service::Monitoring => "monitoring",
            Service::ExternalDns => "external_dns",
        }
    }

    pub fn parse(attribute: &str, key: &str) -> Result<Self, InputError> {
        Service::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| {
                problem(
                    attribute,
                    format!(
                        "unknown platform service `{key}`; known: cilium, argocd, cert_manager, monitoring, external_dns"
                    ),
                )
            })
    }

    /// The namespace the service runs in unless `namespace` says otherwise.
    pub fn default_namespace(self) -> &'static str {
        match self {
            Service::Cilium => "kube-system",
            Service::Argocd => DEFAULT_ARGOCD_NAMESPACE,
            Service::CertManager => "cert-manager",
            Service::Monitoring => "monitoring",
            Service::ExternalDns => "external-dns",
        }
    }
}

/// A service installed before ArgoCD that ArgoCD takes over (`adopt` on argocd).
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub service: Service,
    pub version: String,
    pub values: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformInputs {
    pub service: Service,
    /// As written in the configuration (`v1.19.1` keeps its `v`).
    pub version: String,
    pub values: Map<String, Value>,
    pub namespace: String,
    pub environment: Option<String>,
    pub workloads: WorkloadPolicy,
    pub argocd_namespace: String,
    /// Only on argocd: services it adopts (cilium), with their version and values.
    pub adopt: Vec<Adopted>,
    pub force_conflicts: bool,
    /// Only on argocd: install the HA manifest (`manifests/ha/install.yaml`). Default:
    /// when the workload policy is highly available (more than one replica).
    pub ha: bool,
    /// The Jobs among the objects a previous apply recorded (the computed `objects`):
    /// which Cilium install Jobs have run.
    pub recorded_jobs: Vec<String>,
}

impl PlatformInputs {
    pub fn parse(attributes: &Attributes) -> Result<Self, InputError> {
        let service = Service::parse("service", required_str(attributes, "service")?)?;
        let version = required_str(attributes, "version")?.to_string();
        let namespace = optional_str(attributes, "namespace")?
            .unwrap_or(service.default_namespace())
            .to_string();
        check_label("namespace", &namespace)?;
        let mut adopt = Vec::new();
        match attributes.get("adopt") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if service != Service::Argocd && !items.is_empty() {
                    return Err(problem("adopt", "only the argocd service adopts others"));
                }
                for (index, item) in items.iter().enumerate() {
                    let path = format!("adopt.{index}");
                    let item = item
                        .as_object()
                        .ok_or_else(|| problem(&path, "must be an object"))?;
                    let adopted = Service::parse(
                        &format!("{path}.service"),
                        required_str(item, "service")
                            .map_err(|e| problem(&format!("{path}.{}", e.attribute), e.message))?,
                    )?;
                    if adopted != Service::Cilium {
                        return Err(problem(
                            &format!("{path}.service"),
                            "only cilium is installed before ArgoCD and can be adopted",
                        ));
                    }
                    adopt.push(Adopted {
                        service: adopted,
                        version: required_str(item, "version")
                            .map_err(|e| problem(&format!("{path}.{}", e.attribute), e.message))?
                            .to_string(),
                        values: optional_object(item, "values")
                            .map_err(|e| problem(&format!("{path}.{}", e.attribute), e.message))?
                            .cloned()
                            .unwrap_or_default(),
                    });
                }
            }
            Some(_) => return Err(problem("adopt", "must be a list")),
        }
        let workloads = WorkloadPolicy::parse(attributes)?.unwrap_or_default();
        let ha = optional_bool(attributes, "ha")?;
        if ha.is_some() && service != Service::Argocd {
            return Err(problem(
                "ha",
                "only argocd has an HA install; the other services follow `workloads`",
            ));
        }
        Ok(PlatformInputs {
            service,
            version,
            values: optional_object(attributes, "values")?
                .cloned()
                .unwrap_or_default(),
            namespace,
            environment: optional_str(attributes, "environment")?.map(str::to_string),
            ha: ha.unwrap_or(workloads.is_highly_available()),
            workloads,
            argocd_namespace: argocd_namespace(attributes)?,
            adopt,
            force_conflicts: optional_bool(attributes, "force_conflicts")?.unwrap_or(false),
            recorded_jobs: recorded_jobs(attributes),
        })
    }

    /// The upstream release file this service is installed from (ArgoCD's install
    /// manifest), or `None` when it needs none. A release InfraFlux has no digest of is
    /// refused.
    pub fn release_file(&self) -> Result<Option<&'static ReleaseFile>, InputError> {
        if self.service != Service::Argocd {
            return Ok(None);
        }
        match crate::upstream::argocd(&self.version, self.ha) {
            Some(file) => Ok(Some(file)),
            None => Err(problem(
                "version",
                format!(
                    "argocd {} is not a release InfraFlux has pinned (by sha256); pinned: {}. \
                     Set platform.argocd.version to a pinned release",
                    self.version,
                    crate::upstream::argocd_versions().join(", ")
                ),
            )),
        }
    }
}

// ---- kubernetes_handoff -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffInputs {
    pub environment: String,
    pub project: String,
    pub application: String,
    pub argocd_namespace: String,
    pub repository: String,
    pub revision: String,
    pub path: String,
    pub destination_namespace: String,
    pub automated: bool,
    pub sync_wave: u32,
    /// The revision must be immutable (a tag or a commit); prod's is.
    pub pin_revision: bool,
}

impl HandoffInputs {
    pub fn parse(attributes: &Attributes) -> Result<Self, InputError> {
        let destination_namespace = required_str(attributes, "destination_namespace")?.to_string();
        check_label("destination_namespace", &destination_namespace)?;
        let environment = optional_str(attributes, "environment")?
            .unwrap_or(&destination_namespace)
            .to_string();
        let project = required_str(attributes, "project")?.to_string();
        check_label("project", &project)?;
        let application = required_str(attributes, "application")?.to_string();
        check_label("application", &application)?;
        let revision = required_str(attributes, "revision")?.to_string();
        let pin_revision =
            optional_bool(attributes, "pin_revision")?.unwrap_or(environment == "prod");
        if pin_revision && !is_pinned_revision(&revision) {
            return Err(problem(
                "revision",
                format!(
                    "`{revision}` looks like a branch, but {environment}'s revision must be pinned: \
                     use a release tag (`v1.4.2`) or a commit SHA"
                ),
            ));
        }
        Ok(HandoffInputs {
            environment,
            project,
            application,
            argocd_namespace: argocd_namespace(attributes)?,
            repository: required_str(attributes, "repository")?.to_string(),
            revision,
            path: required_str(attributes, "path")?.to_string(),
            destination_namespace,
            automated: optional_bool(attributes, "automated")?.unwrap_or(true),
            sync_wave: optional_u32(attributes, "sync_wave")?.unwrap_or(0),
            pin_revision,
        })
    }
}

/// A commit SHA, or a tag that reads as a version (`v1.4.2`, `1.4.2`, `release-1.4.2`
/// is not): names of branches cannot be told from tags, so pinning takes the shapes
/// that are tags by convention.
pub fn is_pinned_revision(revision: &str) -> bool {
    if crate::readiness::is_commit_sha(revision) && revision.len() == 40 {
        return true;
    }
    let version = revision.strip_prefix('v').unwrap_or(revision);
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The kubeconfig attribute: a kubeconfig document (YAML), never shown.
pub fn kubeconfig(attributes: &Attributes) -> Result<crate::client::Kubeconfig, InputError> {
    let text = required_str(attributes, "kubeconfig")?;
    crate::client::Kubeconfig::new(text.to_string())
        .map_err(|message| problem("kubeconfig", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn quantities_from_strings_and_model_numbers() {
        assert_eq!(cpu("c", &json!("500m")).unwrap(), "500m");
        assert_eq!(cpu("c", &json!(2000)).unwrap(), "2");
        assert_eq!(cpu("c", &json!(1500)).unwrap(), "1500m");
        assert_eq!(memory("m", &json!(536870912)).unwrap(), "512Mi");
        assert_eq!(memory("m", &json!("1.5Gi")).unwrap(), "1.5Gi");
        assert_eq!(memory("m", &json!(1000)).unwrap(), "1000");
        let error = cpu("quota.cpu", &json!("two")).unwrap_err();
        assert_eq!(error.attribute, "quota.cpu");
        assert!(memory("m", &json!("12XB")).is_err());
    }

    #[test]
    fn namespace_inputs_with_defaults_and_model_layout() {
        let inputs = NamespaceInputs::parse(&attrs(json!({
            "name": "dev",
            "kubeconfig": "apiVersion: v1",
            "pod_security": "baseline",
            "quota": {"cpu": 4000, "memory": 8589934592u64, "pods": 30},
            "workloads": {"replicas": 1, "anti_affinity": false,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": 200, "memory": "256Mi"}}},
        })))
        .unwrap();
        assert_eq!(inputs.environment, "dev");
        assert_eq!(inputs.pod_security, PodSecurity::Baseline);
        assert!(inputs.default_deny);
        assert_eq!(
            inputs.quota,
            Some(Quota {
                cpu: "4".into(),
                memory: "8Gi".into(),
                pods: 30
            })
        );
        assert_eq!(inputs.workloads.limits.cpu, "200m");
        assert_eq!(inputs.argocd_namespace, "argocd");
    }

    #[test]
    fn bad_inputs_name_their_attribute() {
        let error = NamespaceInputs::parse(&attrs(json!({"name": "Dev"}))).unwrap_err();
        assert_eq!(error.attribute, "name");
        let error =
            NamespaceInputs::parse(&attrs(json!({"name": "dev", "pod_security": "strict"})))
                .unwrap_err();
        assert_eq!(error.attribute, "pod_security");
        let error =
            PlatformInputs::parse(&attrs(json!({"service": "istio", "version": "1"}))).unwrap_err();
        assert!(error.message.contains("unknown platform service `istio`"));
        let error = PlatformInputs::parse(&attrs(json!({"service": "cert_manager",
            "version": "v1.19.1", "workloads": {"replicas": 0}})))
        .unwrap_err();
        assert_eq!(error.attribute, "workloads.replicas");
    }

    #[test]
    fn prod_revision_must_be_pinned() {
        let handoff = |environment: &str, revision: &str| {
            HandoffInputs::parse(&attrs(json!({
                "environment": environment, "project": "p", "application": "a",
                "repository": "https://git.example/apps.git", "revision": revision,
                "path": "environments/x", "destination_namespace": environment,
            })))
        };
        assert!(handoff("prod", "v1.4.2").unwrap().pin_revision);
        assert!(handoff("prod", "4f1c2a9e8d7b6c5a4f1c2a9e8d7b6c5a4f1c2a9e").is_ok());
        let error = handoff("prod", "main").unwrap_err();
        assert_eq!(error.attribute, "revision");
        assert!(error.message.contains("must be pinned"));
        assert!(!handoff("dev", "main").unwrap().pin_revision);
        assert!(is_pinned_revision("1.5.0-rc.2"));
        assert!(!is_pinned_revision("stg"));
    }

    #[test]
    fn only_argocd_adopts_and_only_cilium() {
        let error = PlatformInputs::parse(&attrs(json!({"service": "argocd", "version": "v3.5.1",
            "adopt": [{"service": "monitoring", "version": "79.5.0"}]})))
        .unwrap_err();
        assert_eq!(error.attribute, "adopt.0.service");
        let inputs =
            PlatformInputs::parse(&attrs(json!({"service": "argocd", "version": "v3.5.1",
            "adopt": [{"service": "cilium", "version": "1.18.4", "values": {"a": 1}}]})))
            .unwrap();
        assert_eq!(inputs.adopt[0].service, Service::Cilium);
    }
}
