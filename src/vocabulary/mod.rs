//! The shared vocabulary of every stage, as OpenTofu's `internal/addrs`: the types more
//! than one stage names, so no stage has to import another for a word.
//!
//! This module imports nothing else from the crate (the architecture test in
//! `tests/architecture.rs` keeps it that way); everything may import it.
//! - [`address`]: [`ResourceAddr`], a resource's typed name `<env>/<cluster>/<type>.<name>`;
//! - [`sensitive`]: [`Sensitive`] and [`MASK`], how a secret is held and what it prints as;
//! - [`secrets`]: [`SecretStrings`], the plaintext secrets of a configuration, to find
//!   them in values and mask them in text;
//! - [`recorded`]: [`Recorded`], what earlier stages may ask of recorded state without
//!   depending on the state module;
//! - [`machines`]: [`MachineRecords`], each machine's identity (address, Proxmox node,
//!   VM ID) as state records it and resolution reads it back.

pub mod address;
pub mod machines;
pub mod recorded;
pub mod secrets;
pub mod sensitive;

pub use address::{AddrParseError, ResourceAddr};
pub use machines::{MachineIdentity, MachineRecords, split_machine_name};
pub use recorded::Recorded;
pub use secrets::SecretStrings;
pub use sensitive::{MASK, Sensitive};
