//! Compiles `proto/weft/v1/discovery.proto` with protox (a pure-Rust protobuf compiler, so
//! no `protoc` is needed) and generates prost messages and tonic client/server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/weft/v1/discovery.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed=proto/weft/v1/ca.proto");
    let fds = protox::compile([proto, "proto/weft/v1/ca.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Reference-counted: the control plane sends one encoded resource to many proxies.
        .bytes(".weft.v1.Resource.body")
        // Small per-stream buffers: see src/codec.rs.
        .codec_path("crate::codec::BoundedCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
