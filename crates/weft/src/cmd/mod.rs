pub mod analyze;
pub mod control;
pub mod control_proxy;
pub mod proxy;
pub mod status;
