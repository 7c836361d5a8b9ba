//! The Kubernetes provider of InfraFlux: it installs a cluster's platform services,
//! prepares its environment namespaces and hands the cluster over to ArgoCD.
//!
//! - [`object`]: object identity and apply order (CRDs → Namespaces → RBAC,
//!   ServiceAccounts, ConfigMaps → the rest);
//! - [`api`]: the [`api::KubeApi`] trait (server-side apply, get, delete, list, discovery);
//!   [`client`]: its implementation over the `kube` client;
//! - [`readiness`]: the kstatus rules as pure functions over JSON;
//! - [`wait`]: polling until objects are Current, with a caller-chosen timeout;
//! - [`signal`]: the ready signal of a bootstrapped cluster (API, nodes, platform,
//!   RBAC and network policies, namespaces, handoff) as a structured report;
//! - [`inputs`]: resource attributes → typed inputs; [`render`]: inputs → manifests;
//! - [`upstream`]: the official release files (ArgoCD's install manifests), pinned by
//!   sha256, read from an offline mirror, the cache or the network; [`releases`]: the
//!   ones a resource installs, as read for a render;
//! - [`apply`]: phase-ordered server-side apply that writes only what differs;
//! - [`provider`]: the `Provider` implementation (`kubernetes_platform`,
//!   `kubernetes_namespace`, `kubernetes_handoff`) and [`provider::render_resource`],
//!   which the `infraflux-kubernetes --render DIR` helper uses.
//!
//! The fake API server its tests run against lives in `infraflux-lab`
//! (`infraflux_lab::kubernetes`), not here.

pub mod api;
pub mod apply;
pub mod client;
pub mod inputs;
pub mod object;
pub mod provider;
pub mod readiness;
pub mod releases;
pub mod render;
pub mod signal;
pub mod upstream;
pub mod wait;
