//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
#[derive(Debug, Clone, Default, Deserialize)] pub struct EnvoyFilter {}
