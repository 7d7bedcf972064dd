//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
#[derive(Debug, Clone, Default, Deserialize)] pub struct ServiceEntry {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct WorkloadEntry {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct WorkloadGroup {}
