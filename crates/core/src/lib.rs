//! Domain types shared by the executor, the control plane and the tools: no I/O lives here.

pub mod display;
pub mod language;
pub mod model;
pub mod packages;
pub mod resources;
pub mod status;
pub mod workspace_path;

pub use language::Language;
pub use resources::{CpuQuantity, MemoryQuantity, QuantityError};
pub use status::ExecutionStatus;
pub use workspace_path::{PathError, WorkspacePath};
