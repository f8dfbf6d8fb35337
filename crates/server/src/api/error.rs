//! The one place errors become HTTP: every status code the API answers with, and the mapping
//! from services' [`ServiceError`] (and through it the store's, the runtime's, the workspace
//! store's and the executors' errors). Every error body is
//! `{"code": "...", "message": "...", "detail": "...", "request_id": "...", "errors": [...]}`:
//! `code` is stable and machine-readable; `detail` repeats the message for clients of the API
//! this one is compatible with, which read FastAPI's `detail`. Server-side failures are logged
//! here, once, with their cause; the client gets the code and a sentence.

use crate::service::dependencies::pip_output::InstallFailure;
use crate::service::error::{FieldError, ServiceError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sandbox_executor_client::ClientError;
use sandbox_protocol::ErrorCode;
use sandbox_runtime::RuntimeError;
use sandbox_storage::StorageError;
use sandbox_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`session_not_found`, `validation_error`, ...).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The same as `message` (for clients that read FastAPI's `detail`).
    pub detail: String,
    /// The request's id (also in the `X-Request-ID` header).
    pub request_id: Option<String>,
    /// The invalid fields, for `validation_error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error a request ends with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Invalid fields, if any.
    pub errors: Vec<FieldError>,
    /// Seconds a client should wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: Vec::new(), retry_after: None }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413 with `code`.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 500; the cause is logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        internal(&cause)
    }

    /// 422 `validation_error` for one field (a malformed query or path parameter).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::invalid_field(field, message).into()
    }

    fn with_retry(self, secs: u64) -> Self {
        ApiError { retry_after: Some(secs), ..self }
    }

    /// The body, with the request id filled in later by the request middleware.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_owned(),
            message: self.message.clone(),
            detail: self.message.clone(),
            request_id: None,
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // The request middleware re-renders the body with the request id.
        resp.extensions_mut().insert(self.body());
        resp
    }
}

/// 500: the cause is logged here, never sent.
fn internal(cause: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %cause, "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server failed; the error was logged",
    )
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::BadRequest { code, message } => ApiError::new(S::BAD_REQUEST, code, message),
            ServiceError::Forbidden(message) => ApiError::new(S::FORBIDDEN, "forbidden", message),
            ServiceError::NotFound { code, message } => ApiError::new(S::NOT_FOUND, code, message),
            ServiceError::Conflict { code, message } => ApiError::new(S::CONFLICT, code, message),
            ServiceError::TooLarge { code, message } => ApiError::new(S::PAYLOAD_TOO_LARGE, code, message),
            ServiceError::Invalid(errors) => {
                let message = ServiceError::Invalid(errors.clone()).to_string();
                ApiError { errors, ..ApiError::new(S::UNPROCESSABLE_ENTITY, "validation_error", message) }
            }
            ServiceError::Refused { code, message, field } => ApiError {
                errors: field.into_iter().collect(),
                ..ApiError::new(S::UNPROCESSABLE_ENTITY, code, message)
            },
            ServiceError::Quota { code, message, retry_after } => {
                ApiError::new(S::TOO_MANY_REQUESTS, code, message).with_retry(retry_after)
            }
            ServiceError::Capacity(message) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "capacity_exhausted", message).with_retry(30)
            }
            ServiceError::Unavailable { code, message, retry_after } => {
                ApiError::new(S::SERVICE_UNAVAILABLE, code, message).with_retry(retry_after)
            }
            ServiceError::Install(failure) => install_error(&failure),
            ServiceError::Executor(e) => executor_error(e),
            ServiceError::Storage(e) => storage_error(e),
            ServiceError::Store(StoreError::Conflict(what)) => {
                ApiError::new(S::CONFLICT, "already_exists", format!("{what} already exists"))
            }
            ServiceError::Store(e) => internal(&e),
            ServiceError::Internal(cause) => internal(&cause),
        }
    }
}

/// The stable code of a failed package install, as its answer and the session's
/// `dependency_install_error_code` carry it.
pub fn install_failure_code(f: &InstallFailure) -> &'static str {
    install_error(f).code
}

/// A failed package install.
fn install_error(f: &InstallFailure) -> ApiError {
    use StatusCode as S;
    let message = format!("installing dependencies failed: {f}");
    match f {
        InstallFailure::NotFound(_) => ApiError::new(S::UNPROCESSABLE_ENTITY, "package_not_found", message),
        InstallFailure::Failed(_) | InstallFailure::TooLarge { .. } | InstallFailure::NoSpace { .. } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "dependency_install_failed", message)
        }
        InstallFailure::IndexUnreachable(_) => {
            ApiError::new(S::BAD_GATEWAY, "package_index_unreachable", message)
        }
        InstallFailure::TimedOut(_) => {
            ApiError::new(S::GATEWAY_TIMEOUT, "dependency_install_timeout", message)
        }
        InstallFailure::Runtime(RuntimeError::Unsupported { .. }) => {
            ApiError::new(S::NOT_IMPLEMENTED, "dependencies_unsupported", message)
        }
        InstallFailure::Runtime(RuntimeError::ImageNotFound(_)) => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "template_image_missing", message)
        }
        InstallFailure::Runtime(_) | InstallFailure::Host(_) | InstallFailure::Sets(_) => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "installer_unavailable", message).with_retry(5)
        }
    }
}

/// An executor's refusal or failure.
fn executor_error(e: ClientError) -> ApiError {
    use StatusCode as S;
    match e {
        ClientError::Api { body, .. } => {
            let (status, code) = match body.code {
                ErrorCode::InvalidPath | ErrorCode::BadRequest => (S::BAD_REQUEST, "invalid_path"),
                ErrorCode::NotFound => (S::NOT_FOUND, "file_not_found"),
                ErrorCode::IsADirectory => (S::CONFLICT, "is_a_directory"),
                ErrorCode::NotARegularFile => (S::UNPROCESSABLE_ENTITY, "not_a_regular_file"),
                ErrorCode::NotADirectory => (S::CONFLICT, "not_a_directory"),
                ErrorCode::AlreadyExists => (S::CONFLICT, "already_exists"),
                ErrorCode::DirectoryNotEmpty => (S::CONFLICT, "directory_not_empty"),
                ErrorCode::PermissionDenied => (S::FORBIDDEN, "permission_denied"),
                ErrorCode::TooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
                ErrorCode::NoSpace => (S::INSUFFICIENT_STORAGE, "workspace_full"),
                ErrorCode::Busy => {
                    return ApiError::new(S::TOO_MANY_REQUESTS, "too_many_executions", body.message)
                        .with_retry(1);
                }
                ErrorCode::TooManyWatchers => (S::TOO_MANY_REQUESTS, "too_many_watchers"),
                _ => (S::BAD_GATEWAY, "sandbox_error"),
            };
            ApiError::new(status, code, body.message)
        }
        ClientError::Unreachable(why) => ApiError::new(
            S::SERVICE_UNAVAILABLE,
            "sandbox_unavailable",
            format!("the session's sandbox did not answer: {why}"),
        )
        .with_retry(5),
        other => ApiError::new(S::BAD_GATEWAY, "sandbox_error", other.to_string()),
    }
}

/// A workspace store's failure.
fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound { .. } => ApiError::not_found("file_not_found", e.to_string()),
        StorageError::InvalidPath { .. } => ApiError::bad_request("invalid_path", e.to_string()),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("workspace storage failed: {other}"),
        )
        .with_retry(5),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// An error as the E2B-compatible API answers it: `{"code": <HTTP status>, "message": "..."}`
/// (with our stable code in `error_code`), the body E2B's SDKs read.
#[derive(Debug)]
pub struct E2bError(pub ApiError);

impl<E: Into<ApiError>> From<E> for E2bError {
    fn from(e: E) -> Self {
        E2bError(e.into())
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = serde_json::json!({"code": e.status.as_u16(), "message": e.message, "error_code": e.code});
        let mut resp = (e.status, axum::Json(body)).into_response();
        if let Some(secs) = e.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Connect-RPC's name for an error and the HTTP status it goes with (the Connect protocol's
/// table), for the E2B-compatible envd services.
pub fn connect_code(e: &ApiError) -> (&'static str, StatusCode) {
    use StatusCode as S;
    let code = match (e.code, e.status) {
        ("already_exists", _) => "already_exists",
        ("not_a_directory" | "is_a_directory" | "invalid_path" | "directory_not_empty", _) => {
            "invalid_argument"
        }
        (_, S::BAD_REQUEST | S::UNPROCESSABLE_ENTITY) => "invalid_argument",
        (_, S::UNAUTHORIZED) => "unauthenticated",
        (_, S::FORBIDDEN) => "permission_denied",
        (_, S::NOT_FOUND) => "not_found",
        (_, S::CONFLICT) => "failed_precondition",
        (_, S::PAYLOAD_TOO_LARGE | S::TOO_MANY_REQUESTS | S::INSUFFICIENT_STORAGE) => "resource_exhausted",
        (_, S::NOT_IMPLEMENTED) => "unimplemented",
        (_, S::SERVICE_UNAVAILABLE | S::BAD_GATEWAY) => "unavailable",
        (_, S::GATEWAY_TIMEOUT) => "deadline_exceeded",
        _ => "internal",
    };
    (code, connect_status(code))
}

/// The HTTP status of a Connect error code.
pub fn connect_status(code: &str) -> StatusCode {
    use StatusCode as S;
    match code {
        "invalid_argument" | "failed_precondition" | "out_of_range" => S::BAD_REQUEST,
        "unauthenticated" => S::UNAUTHORIZED,
        "permission_denied" => S::FORBIDDEN,
        "not_found" => S::NOT_FOUND,
        "already_exists" | "aborted" => S::CONFLICT,
        "resource_exhausted" => S::TOO_MANY_REQUESTS,
        "canceled" => StatusCode::from_u16(499).unwrap_or(S::BAD_REQUEST),
        "unimplemented" => S::NOT_IMPLEMENTED,
        "unavailable" => S::SERVICE_UNAVAILABLE,
        "deadline_exceeded" => S::GATEWAY_TIMEOUT,
        _ => S::INTERNAL_SERVER_ERROR,
    }
}
