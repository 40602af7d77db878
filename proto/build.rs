//! Compiles the `.proto` files. protoc comes from `protoc-bin-vendored`
//! unless `PROTOC` names one, so a fresh machine needs no install step.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => std::path::PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let protos = [
        "proto/ledger/internal/v1/raft.proto",
        "proto/ledger/v1/ledger.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The descriptor set serves gRPC server reflection.
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("ledger_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
