//! Structured logs: one line per event, `key=value` fields, no colours (the lines are read
//! by `weft up`, log collectors and tests, not only by people). `RUST_LOG` sets the filter
//! (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Env};

pub fn init(env: &Env) -> Result<(), ConfigError> {
    let filter = match env.get("RUST_LOG") {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| ConfigError::invalid("RUST_LOG", directives, e))?,
        None => EnvFilter::new("info"),
    };
    // A subscriber already installed (a test harness) keeps its place.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    Ok(())
}
