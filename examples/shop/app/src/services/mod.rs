//! The four services. Each exposes `app(&Env) -> App` (used by its binary and by tests,
//! which run them in-process on port 0).

pub mod cart;
pub mod order;
pub mod product;
pub mod user;
