//! The controller layer: typed commands from the API, carried out against the store and the
//! runtime, and the background work that keeps the two in step.
pub mod access;
pub mod contexts;
pub mod dependencies;
pub mod disk;
pub mod egress;
pub mod error;
pub mod executions;
pub mod files;
pub mod idempotency;
pub mod identity;
pub mod keys;
pub mod lifecycle;
pub mod pools;
pub mod processes;
pub mod sandboxes;
pub mod sessions;
pub mod templates;
pub mod workspaces;
