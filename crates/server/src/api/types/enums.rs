//! Closed sets of string values as OpenAPI enums, taken from the types that define them.

use sandbox_core::ExecutionStatus;
use sandbox_core::language::Language;
use sandbox_core::model::{InstallStatus, SessionStatus};
use sandbox_protocol::ContextStatus;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A string schema whose value is one of `values`.
pub fn string_enum(description: &str, values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .build()
}

/// A session's status.
pub fn session_status() -> Object {
    string_enum("The session's status.", SessionStatus::ALL.map(SessionStatus::as_str))
}

/// An execution's status (`pending` is never used by this server).
pub fn execution_status() -> Object {
    string_enum(
        "`running`, then `completed`, `failed`, `timeout`, `crashed` or `cancelled` (`pending` is never used by this server).",
        ExecutionStatus::ALL.map(ExecutionStatus::as_str),
    )
}

/// A language code runs in.
pub fn language() -> Object {
    string_enum("The language.", Language::ALL.map(Language::as_str))
}

/// A dependency install's status.
pub fn install_status() -> Object {
    string_enum("The dependency install's status.", InstallStatus::ALL.map(InstallStatus::as_str))
}

/// A code context's status.
pub fn context_status() -> Object {
    string_enum(
        "`starting`, `idle`, `busy`, `lost` (its interpreter is gone: executions answer 409 `context_lost` until it is restarted) or `expired` (reclaimed after the idle timeout; otherwise like `lost`).",
        ContextStatus::ALL.map(ContextStatus::as_str),
    )
}
