pub mod analyze;
pub mod proxy;
