//! The Talos API over gRPC: a minimal, wire-compatible subset of
//! `machine.MachineService` (see `proto/`), TLS via rustls, one connection per node.
//!
//! The prost/tonic code in `generated/` is generated from `proto/` and committed, so no
//! `protoc` is needed to build; `tests/proto.rs` regenerates it with the vendored protoc
//! and fails when it is stale.

mod client;
mod tls;

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod generated {
    pub mod common {
        include!("generated/common.rs");
    }
    pub mod machine {
        include!("generated/machine.rs");
    }
}

pub use client::{
    ApplyMode, ApplyOutcome, BootstrapOutcome, ConnectOptions, DEFAULT_PORT, EtcdMemberInfo,
    NodeClient, NodeMode, ResetOptions, ServiceStatus, UpgradeAck, UpgradeOptions, VersionInfo,
    WipeMode, detect, detect_mode, split_endpoint, unpack_kubeconfig,
};
pub use tls::{ClientIdentity, Credentials};

/// PEM → rustls helpers, public for servers that speak this API (the fake node of
/// `infraflux-lab`), so that both sides read Talos's PEM the same way.
pub use tls::{certificates, private_key, provider as crypto_provider};

/// Pack a kubeconfig the way Talos streams it: a gzip-compressed tar holding one file
/// named `kubeconfig`.
pub fn pack_kubeconfig(kubeconfig: &[u8]) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let mut header = tar::Header::new_gnu();
    header.set_size(kubeconfig.len() as u64);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append_data(&mut header, "kubeconfig", kubeconfig)?;
    builder.into_inner()?.finish()
}
