pub mod analyze;
pub mod control;
pub mod down;
pub mod generate;
pub mod proxy;
pub mod status;
pub mod up;
