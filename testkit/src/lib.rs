//! What InfraFlux's tests run against instead of fakes written here, shared by every
//! test binary that needs it (a dev-dependency of the root crate, the Kubernetes
//! provider and the lab; never a normal dependency):
//!
//! - [`counterparts`]: where the binaries `.ci/counterparts` builds from the official Go
//!   modules are, and the skip-or-fail rule (`INFRAFLUX_REQUIRE_COUNTERPARTS`);
//! - [`control_plane`]: a real Kubernetes control plane (etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler, kwok), one per test binary;
//! - [`endpoint`]: raw requests to an API server, the real one or the lab's fake, for
//!   what a test does in another tool's name (a second field manager, a controller
//!   writing status) and for comparing the two;
//! - [`argocd`]: a stand-in for ArgoCD's application controller, which writes
//!   Applications' status as the test decides.

pub mod argocd;
pub mod control_plane;
pub mod counterparts;
pub mod endpoint;
