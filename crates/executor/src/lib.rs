//! The in-sandbox executor: runs each execution under bubblewrap with a seccomp filter and
//! serves the workspace's files, over HTTP on a Unix socket (and TCP with a token).
pub mod api;
pub mod capture;
pub mod config;
pub mod context;
pub mod egress;
pub mod engine;
pub mod error;
pub mod instance;
pub mod lang;
pub mod outcome;
pub mod process;
pub mod reaper;
pub mod registry;
pub mod sandbox;
pub mod server;
pub mod spares;
pub mod supervisor;
pub mod usage;
pub mod workspace;
