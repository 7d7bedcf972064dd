//! The order service of the demo shop; see `weft_shop::services::order`.

fn main() -> std::process::ExitCode {
    weft_shop::server::main("order", weft_shop::services::order::app)
}
