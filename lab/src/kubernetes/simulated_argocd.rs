//! A simulated ArgoCD install, for a lab that has no copy of ArgoCD's release manifest
//! (no mirror, no cache, no network): the API serves ArgoCD's kinds as if its CRDs had
//! been installed and, with [`super::ready_reactor`], plays its application controller
//! (Applications Synced and Healthy). The lab says so loudly when it does this; nothing
//! here stands for the upstream manifest itself, only for the API an installed ArgoCD
//! adds.

use super::{FakeApiServer, Kind};

/// The kinds ArgoCD's CRDs add: (kind, plural, status subresource), all
/// `argoproj.io/v1alpha1`, namespaced, as upstream v3.5.1's CRDs declare them (only
/// ApplicationSet has a `status` subresource).
const KINDS: [(&str, &str, bool); 3] = [
    ("Application", "applications", false),
    ("AppProject", "appprojects", false),
    ("ApplicationSet", "applicationsets", true),
];

impl FakeApiServer {
    /// Serve ArgoCD's kinds without their CRDs: the simulated install.
    pub fn simulate_argocd(&self) {
        let mut state = self.state.lock().unwrap();
        for (kind, plural, status_subresource) in KINDS {
            // As `kinds::of_crd` describes the kinds of an installed CRD.
            let kind = Kind {
                group: "argoproj.io".into(),
                version: "v1alpha1".into(),
                kind: kind.into(),
                plural: plural.into(),
                namespaced: true,
                generation: true,
                returns_deleted: false,
                status_subresource,
                custom: true,
            };
            if !state.kinds.contains(&kind) {
                state.kinds.push(kind);
            }
        }
    }

    /// Whether ArgoCD's kinds are served (installed or simulated).
    pub fn serves_argocd(&self) -> bool {
        let state = self.state.lock().unwrap();
        state
            .kinds
            .iter()
            .any(|k| k.group == "argoproj.io" && k.kind == "Application")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulated_install_serves_argocds_kinds() {
        let server = FakeApiServer::start().await.unwrap();
        assert!(!server.serves_argocd(), "not before an install");
        server.simulate_argocd();
        assert!(server.serves_argocd());
        server.insert(serde_json::json!({"apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject", "metadata": {"name": "platform", "namespace": "argocd"}}));
        assert!(
            server
                .object(
                    "argoproj.io/v1alpha1",
                    "AppProject",
                    Some("argocd"),
                    "platform"
                )
                .is_some()
        );
    }
}
