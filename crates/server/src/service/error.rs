//! What can go wrong in a service, said in the service's terms. Every variant carries the stable
//! code clients match on; which HTTP status each gets is decided in one place, `api::error`.

use crate::service::dependencies::pip_output::InstallFailure;
use sandbox_executor_client::ClientError;
use sandbox_storage::StorageError;
use sandbox_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field, dotted for nested ones (`dependencies.0.name`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong because `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Why a service refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed in a way no field names (`invalid_path`, `malformed_upload`).
    #[error("{message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// What the request names does not exist (for this caller).
    #[error("{message}")]
    NotFound {
        /// `session_not_found`, `file_not_found`, ...
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// The request conflicts with the current state (`session_not_running`, ...).
    #[error("{message}")]
    Conflict {
        /// The stable code.
        code: &'static str,
        /// The conflict.
        message: String,
    },
    /// Something is larger than allowed (`code_too_large`, `payload_too_large`).
    #[error("{message}")]
    TooLarge {
        /// The stable code.
        code: &'static str,
        /// The limit.
        message: String,
    },
    /// Fields of the request are invalid (`validation_error`).
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// A well-formed request the service will not carry out, with a code of its own
    /// (`index_not_allowed`, `template_image_missing`, `not_a_regular_file`).
    #[error("{message}")]
    Refused {
        /// The stable code.
        code: &'static str,
        /// Why.
        message: String,
        /// The field it is about, if one.
        field: Option<FieldError>,
    },
    /// The caller's share is used up (`quota_exceeded`, `too_many_executions`); retry later.
    #[error("{message}")]
    Quota {
        /// The stable code.
        code: &'static str,
        /// What is used up.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The host has no room now (`capacity_exhausted`); retry later.
    #[error("{0}")]
    Capacity(String),
    /// Something the service depends on did not answer (`sandbox_unavailable`,
    /// `runtime_unavailable`, `storage_unavailable`, `sandbox_start_failed`, ...); retry later.
    #[error("{message}")]
    Unavailable {
        /// The stable code.
        code: &'static str,
        /// What did not answer.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A package install failed.
    #[error("installing dependencies failed: {0}")]
    Install(#[from] InstallFailure),
    /// A sandbox's executor refused or failed a request.
    #[error(transparent)]
    Executor(#[from] ClientError),
    /// The workspace store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an impossible state; the cause is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// `BadRequest`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::BadRequest { code, message: message.into() }
    }

    /// `NotFound`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::NotFound { code, message: message.into() }
    }

    /// `Conflict`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Conflict { code, message: message.into() }
    }

    /// `TooLarge`.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::TooLarge { code, message: message.into() }
    }

    /// `Invalid` for one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![FieldError::new(field, message)])
    }

    /// `Refused`, about `field` when given.
    pub fn refused(code: &'static str, message: impl Into<String>, field: Option<FieldError>) -> Self {
        ServiceError::Refused { code, message: message.into(), field }
    }

    /// `Quota`.
    pub fn quota(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        ServiceError::Quota { code, message: message.into(), retry_after }
    }

    /// `Unavailable`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        ServiceError::Unavailable { code, message: message.into(), retry_after }
    }

    /// `Internal`.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ServiceError::Internal(cause.to_string())
    }
}

impl From<sandbox_core::packages::plan::PlanError> for ServiceError {
    fn from(e: sandbox_core::packages::plan::PlanError) -> Self {
        use sandbox_core::packages::plan::PlanError;
        match e {
            PlanError::Invalid(fields) => {
                ServiceError::Invalid(fields.into_iter().map(|(f, m)| FieldError::new(f, m)).collect())
            }
            PlanError::IndexNotAllowed(url) => ServiceError::refused(
                "index_not_allowed",
                format!(
                    "the package index {url} is not allowed here; the operator lists the allowed ones (dependencies.allowed_index_urls)"
                ),
                Some(FieldError::new(
                    "python_package_index_url",
                    "not on this server's list of allowed package indexes",
                )),
            ),
        }
    }
}

/// What services answer with.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
