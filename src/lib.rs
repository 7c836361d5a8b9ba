//! # InfraFlux
//!
//! A declarative provisioner for Proxmox VE + Talos Kubernetes + GitOps platforms.
//!
//! ## The pipeline
//!
//! ```text
//! config/ (YAML layers) ─load_config─▶ Configuration ─resolve_model─▶ Model
//!        ─build_graph─▶ ResourceGraph ─refresh─▶ State ─plan─▶ Plan ─apply─▶ State
//! ```
//!
//! Each stage is a folder:
//! - [`config`]: layer files with positions, interpolation, schema checks, deep merge
//!   with provenance, the effective configuration per (environment, cluster);
//! - [`model`]: resolved, validated types (sizes, networks, versions), node addresses;
//! - [`diag`]: problems with file, line, column, label and help, rendered by miette;
//! - [`graph`]: model → desired resources (`graph::build`, docs/resources.md) → the
//!   resource graph, built by named steps; orphans from state; DOT output;
//! - [`plan`]: refresh (batched reads), reference resolution, provider plans → `Plan`
//!   of `Change`s with `Action`s; human and JSON renderers; saved plans;
//! - [`apply`]: the parallel walk (global and per-key limits), state persisted after
//!   every resource, upstream-failure skips, cancellation, `Reporter`;
//! - [`registry`]: providers by name (the binary fills it);
//! - [`policy`]: environment rules (pinning, HA, quorum, isolation, parity) with waivers;
//! - [`state`]: one checksummed document per environment, atomic writes, locks;
//! - [`commands`]: one thin file per CLI command, from arguments to a stage call.
//!
//! ## Files a user touches
//! - `config/defaults/*.yaml`, `config/templates/<size>.yaml`,
//!   `config/environments/<env>.yaml`, `config/clusters/<name>.yaml` (README "Configuration");
//! - age-encrypted secrets: `${age:FILE#KEY}` files, `<layer>.age.yaml` layer parts, and
//!   `config/.age-recipients` (README "Secrets in configuration", [`config::secrets`]);
//! - `.infraflux/state/<env>.json` (state; `<env>.json.backup` is the version before the
//!   last write, `<env>.lock` exists while a run holds the lock): see [`state::local`].
//!
//! ## Glossary
//! - **environment**: dev, staging, prod — a set of clusters promoted together;
//! - **cluster**: a Kubernetes cluster (management, workload, edge) as run in one environment;
//! - **template**: a size (small, medium, large): node counts and VM sizes;
//! - **layer**: one YAML file of the hierarchy; later layers override earlier ones;
//! - **resource**: one thing InfraFlux manages (a VM, a machine config, an Application);
//! - **address**: a resource's name, `<env>/<cluster>/<type>.<name>`;
//! - **provider**: the code that manages one family of resources (proxmox, talos,
//!   kubernetes) behind the contract in `providers/provider`;
//! - **change**: what one plan does to one resource; its **action** is one of no-op,
//!   create, update, delete-then-create, create-then-delete, delete, read;
//! - **state**: what InfraFlux last knew of every resource, one document per environment;
//! - **handoff**: the ArgoCD project and application that hand an environment to GitOps.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diag;
pub mod encryption;
pub mod graph;
#[cfg(feature = "lab")]
pub mod lab;
pub mod model;
pub mod operation;
pub mod plan;
pub mod policy;
pub mod private_file;
pub mod promotion;
pub mod registry;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod vocabulary;
