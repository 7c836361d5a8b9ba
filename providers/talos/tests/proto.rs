//! The gRPC code in `src/api/generated/` is generated from `proto/` and committed, so a
//! fresh machine builds without `protoc`. This test regenerates it with the protoc that
//! the `protoc-bin-vendored` crate ships and fails when the committed files are stale.
//!
//! Maintainer workflow after editing `proto/*.proto`:
//! `INFRAFLUX_REGENERATE_PROTO=1 cargo test -p infraflux-talos --test proto`

use std::path::{Path, PathBuf};

fn generate(out_dir: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest.join("proto");
    let include = protoc_bin_vendored::include_path().expect("vendored protobuf includes");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path().expect("vendored protoc"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_with_config(
            config,
            &[
                proto_dir.join("common.proto"),
                proto_dir.join("machine.proto"),
            ],
            &[proto_dir, include],
        )
        .expect("protoc and code generation");
}

#[test]
fn generated_grpc_code_is_up_to_date() {
    let committed: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/generated");
    if std::env::var_os("INFRAFLUX_REGENERATE_PROTO").is_some() {
        generate(&committed);
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    for file in ["common.rs", "machine.rs"] {
        let expected = std::fs::read_to_string(fresh.path().join(file)).unwrap();
        let actual = std::fs::read_to_string(committed.join(file)).unwrap_or_default();
        assert!(
            expected == actual,
            "src/api/generated/{file} is stale; run INFRAFLUX_REGENERATE_PROTO=1 cargo test -p infraflux-talos --test proto"
        );
    }
}
