//! The product service of the demo shop; see `weft_shop::services::product`.

fn main() -> std::process::ExitCode {
    weft_shop::server::main("product", weft_shop::services::product::app)
}
