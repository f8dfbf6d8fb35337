//! The controller layer: typed commands from the API, carried out against the store and the
//! runtime.
pub mod executions;
pub mod sessions;
pub mod templates;
