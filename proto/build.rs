// Generates the keytrail.v1 gRPC code. protoc comes from `protoc-bin-vendored`, so a fresh
// machine needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("keytrail_v1_descriptor.bin"))
        .compile_protos(
            &["keytrail/v1/log.proto", "keytrail/v1/directory.proto"],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=keytrail");
    Ok(())
}
