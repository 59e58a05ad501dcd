//! Orders: what a checkout produced, and how it ended.
pub mod handlers;
pub mod model;
pub mod store;
