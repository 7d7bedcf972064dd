//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
use crate::object::Object;
use crate::diag::Diagnostic;
#[derive(Debug, Clone, Default, Deserialize)] pub struct MeshConfig {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct IstioOperator {}
impl MeshConfig {
    pub fn from_objects(_objects: &[Object]) -> MeshConfig { MeshConfig::default() }
    pub fn load_file(_path: &std::path::Path) -> Result<MeshConfig, Diagnostic> { Ok(MeshConfig::default()) }
}
