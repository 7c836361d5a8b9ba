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
//! Each stage is a folder, and every top-level module has one line here. The modules on
//! top may use any other; the rest form no import cycle and never import those on top
//! (`tests/architecture.rs` checks both).
//!
//! On top:
//! - `main.rs` (the binary): arguments, logging, the exit code;
//! - [`cli`]: clap types only;
//! - [`commands`]: one thin file per CLI command, from arguments to an operation;
//! - [`operation`]: what a command runs, over the stages (`operation::load::load_model`:
//!   configuration, model and policy together);
//! - `lab` (feature `lab`): the whole pipeline on loopback against simulators;
//! - `testing` (tests, feature `testing`): an in-memory state store, a recording
//!   reporter, short constructors.
//!
//! The stages, in pipeline order:
//! - [`config`]: layer files with positions, interpolation, schema checks, deep merge
//!   with provenance, age-encrypted secrets, the effective configuration per
//!   (environment, cluster);
//! - [`model`]: resolved, validated types (sizes, networks, versions), node addresses;
//! - [`policy`]: environment rules (pinning, HA, quorum, isolation, parity) with waivers;
//! - [`graph`]: model → desired resources ([`graph::desired`], docs/resources.md) →
//!   the resource graph, built by named steps; orphans from state; plan-time placement
//!   (no I/O); DOT output;
//! - [`plan`]: refresh (batched reads), placement inventories, reference resolution,
//!   provider plans → `Plan` of `Change`s with `Action`s; human and JSON renderers;
//!   saved plans;
//! - [`apply`]: the parallel walk (global and per-key limits), state persisted after
//!   every resource, upstream-failure skips, cancellation, `Reporter`;
//! - [`state`]: one checksummed document per environment, backends, atomic writes, locks;
//! - [`promotion`]: the promotion guard (prod runs only what staging ran).
//!
//! Shared by the stages (the leaves):
//! - [`vocabulary`]: the words every stage uses ([`vocabulary::ResourceAddr`],
//!   [`vocabulary::Sensitive`] and its mask, secret strings, the view of recorded
//!   state); it imports nothing from the crate;
//! - [`encryption`]: age encryption at rest, for state, saved plans and configuration
//!   secrets;
//! - [`diag`]: problems with file, line, column, label and help, rendered by miette;
//! - [`registry`]: providers by name (the binary fills it);
//! - [`private_file`]: files readable by their owner only (secrets on disk);
//! - [`cores`]: CPU work split across the machine's cores.
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
pub mod cores;
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
