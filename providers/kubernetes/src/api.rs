//! The few Kubernetes API operations the provider needs, behind a trait so ordering and
//! readiness logic run against JSON fixtures in tests. [`crate::client::KubeClient`] is
//! the real implementation.

use async_trait::async_trait;
use serde_json::Value;

use crate::object::ObjectRef;

/// The field manager InfraFlux applies as.
pub const FIELD_MANAGER: &str = "infraflux";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Take over fields owned by another manager instead of failing with a conflict.
    /// Off unless the resource asks for it (`force_conflicts`, see the README).
    pub force: bool,
}

/// One field another manager owns, from a 409 on server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// `.spec.replicas`.
    pub field: String,
    /// `kubectl-client-side-apply`, `helm`, `argocd-controller`…
    pub manager: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The API server does not serve this kind (a CRD not installed yet, a typo).
    #[error("the API server does not serve {api_version} {kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{object}: conflicts with other field managers: {}", render_conflicts(.conflicts))]
    Conflict {
        object: String,
        conflicts: Vec<FieldConflict>,
    },
    /// Any other answer from the API server, with the request (no secrets).
    #[error("{method} {url} → {status}: {message}")]
    Status {
        method: String,
        url: String,
        status: u16,
        reason: String,
        message: String,
    },
    /// The API server could not be reached, or the connection failed.
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Invalid(String),
}

fn render_conflicts(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("{} (owned by {})", c.field, c.manager))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Parse the conflicts out of a server-side apply 409 message. The API server formats
/// them (apimachinery `merge.Conflicts`) either as one
/// `Apply failed with 1 conflict: conflict with "helm" using apps/v1: .spec.replicas`
/// or as a list:
/// `Apply failed with 2 conflicts: conflicts with "helm" using apps/v1:\n- .spec.replicas\n- .spec.template…`.
pub fn parse_conflicts(message: &str) -> Vec<FieldConflict> {
    let mut conflicts = Vec::new();
    let mut manager: Option<String> = None;
    for line in message.lines() {
        let line = line.trim();
        if let Some(field) = line.strip_prefix("- ") {
            if let Some(manager) = &manager {
                conflicts.push(FieldConflict {
                    field: field.trim().to_string(),
                    manager: manager.clone(),
                });
            }
            continue;
        }
        for marker in ["conflicts with \"", "conflict with \""] {
            let Some(start) = line.find(marker) else {
                continue;
            };
            let rest = &line[start + marker.len()..];
            let Some(end) = rest.find('"') else { break };
            let name = rest[..end].to_string();
            // `… using apps/v1: .spec.replicas` (one conflict) or `… using apps/v1:` (list)
            let tail = &rest[end + 1..];
            let field = tail.split_once(": ").map(|(_, f)| f.trim()).unwrap_or("");
            if !field.is_empty() {
                conflicts.push(FieldConflict {
                    field: field.to_string(),
                    manager: name.clone(),
                });
            }
            manager = Some(name);
            break;
        }
    }
    conflicts
}

#[async_trait]
pub trait KubeApi: Send + Sync {
    /// Server-side apply `manifest` as [`FIELD_MANAGER`]; returns the object as stored.
    async fn apply(&self, manifest: &Value, options: ApplyOptions) -> Result<Value, ApiError>;

    /// The live object, `None` when it does not exist.
    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError>;

    /// Delete the object; `false` when it was already gone.
    async fn delete(&self, object: &ObjectRef) -> Result<bool, ApiError>;

    /// Every object of a kind, in one namespace or (None) in all of them.
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, ApiError>;

    /// Forget what is known about served kinds (after CRDs are installed).
    async fn refresh_discovery(&self) -> Result<(), ApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_conflict_names_field_and_manager() {
        let message = "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas";
        assert_eq!(
            parse_conflicts(message),
            [FieldConflict {
                field: ".spec.replicas".into(),
                manager: "kubectl-client-side-apply".into()
            }]
        );
    }

    #[test]
    fn listed_conflicts_keep_their_manager() {
        let message = "Apply failed with 3 conflicts: conflicts with \"helm\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image\nconflicts with \"argocd-controller\":\n- .metadata.labels.team";
        let conflicts = parse_conflicts(message);
        assert_eq!(conflicts.len(), 3);
        assert_eq!(conflicts[1].manager, "helm");
        assert_eq!(
            conflicts[1].field,
            ".spec.template.spec.containers[name=\"app\"].image"
        );
        assert_eq!(conflicts[2].manager, "argocd-controller");
        assert_eq!(conflicts[2].field, ".metadata.labels.team");
    }

    #[test]
    fn conflict_error_names_fields_and_managers() {
        let error = ApiError::Conflict {
            object: "Deployment dev/web".into(),
            conflicts: vec![FieldConflict {
                field: ".spec.replicas".into(),
                manager: "helm".into(),
            }],
        };
        assert_eq!(
            error.to_string(),
            "Deployment dev/web: conflicts with other field managers: .spec.replicas (owned by helm)"
        );
        assert!(!error.is_retryable());
    }
}
