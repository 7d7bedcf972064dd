//! Compiles `proto/weft/v1/discovery.proto` (and the OTLP subset in `proto/otlp/`) with protox (a pure-Rust protobuf compiler, so
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

    // OTLP, for the proxy's trace and access-log exporters (see src/otlp.rs).
    let otlp = [
        "proto/otlp/common.proto",
        "proto/otlp/resource.proto",
        "proto/otlp/trace.proto",
        "proto/otlp/trace_service.proto",
        "proto/otlp/logs.proto",
        "proto/otlp/logs_service.proto",
    ];
    for file in otlp {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(otlp, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        // The server side is for tests and the control plane's collector.
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
