//! Compiles `proto/weft/v1/discovery.proto` with protox (a pure-Rust protobuf compiler, so
//! no `protoc` is needed) and generates prost messages and tonic client/server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/weft/v1/discovery.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed=proto/weft/v1/ca.proto");
    let fds = protox::compile([proto, "proto/weft/v1/ca.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
