//! Compiles the gRPC API in `proto/`, writes the descriptor set that server
//! reflection serves, and generates the proto3 JSON mapping of its messages
//! (pbjson) that the JSON side of the API speaks.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    // The vendored protoc unless the caller chose one (for example a distro's).
    if env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    // The well-known types with their JSON forms (`pb::wkt`).
    config.prost_types_path("crate::pb::wkt");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("headline_dedup_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(&descriptor_path).compile_with_config(
        config,
        &["proto/headline_dedup/v1/dedup_service.proto"],
        &["proto"],
    )?;
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.build(&[".headline_dedup"])?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
