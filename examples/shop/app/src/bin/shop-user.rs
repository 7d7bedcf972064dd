//! The user service of the demo shop; see `weft_shop::services::user`.

fn main() -> std::process::ExitCode {
    weft_shop::server::main("user", weft_shop::services::user::app)
}
