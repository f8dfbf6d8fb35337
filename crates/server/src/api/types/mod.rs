//! Request and response bodies of the REST API, field for field compatible with the API of the
//! Python container-scheduler service this server implements, plus the additions this server
//! makes. One file per group of routes.

mod contexts;
mod enums;
mod executions;
mod files;
mod health;
mod keys;
mod page;
mod processes;
mod sessions;
mod templates;
pub mod time;

pub use contexts::*;
pub use enums::*;
pub use executions::*;
pub use files::*;
pub use health::*;
pub use keys::*;
pub use page::*;
pub use processes::*;
pub use sessions::*;
pub use templates::*;
