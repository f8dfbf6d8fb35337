//! The second isolation layer: bwrap's arguments, the seccomp filter, cgroup readings.
pub mod bwrap;
pub mod cgroup;
pub mod seccomp;
