//! The cart service of the demo shop; see `weft_shop::services::cart`.

fn main() -> std::process::ExitCode {
    weft_shop::server::main("cart", weft_shop::services::cart::app)
}
