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

/// Which API answers with an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The REST API (and the E2B-compatible one, which reuses its codes).
    Rest,
    /// Only the E2B-compatible API.
    E2b,
}

/// Every error the server answers with: its HTTP status, its stable code and the API that
/// uses it (a code may come with more than one status). `ApiError::new` checks its arguments
/// against this list in debug builds, the OpenAPI document lists the REST codes as the enum of
/// `ErrorBody.code`, and a test keeps docs/api.md's table equal to it.
pub const ERROR_CODES: &[(u16, &str, Api)] = &[
    (400, "malformed_json", Api::Rest),
    (400, "invalid_idempotency_key", Api::Rest),
    (400, "invalid_path", Api::Rest),
    (400, "malformed_upload", Api::Rest),
    (400, "upload_interrupted", Api::Rest),
    (400, "invalid_process", Api::Rest),
    (400, "bad_request", Api::Rest),
    (400, "invalid_query", Api::E2b),
    (400, "invalid_request", Api::E2b),
    (400, "invalid_state", Api::E2b),
    (400, "invalid_limit", Api::E2b),
    (400, "invalid_next_token", Api::E2b),
    (400, "unsupported_encoding", Api::E2b),
    (400, "env_vars_unsupported", Api::E2b),
    (400, "pause_unsupported", Api::E2b),
    (400, "language_unavailable", Api::E2b),
    (401, "unauthorized", Api::Rest),
    (403, "forbidden", Api::Rest),
    (403, "permission_denied", Api::Rest),
    (404, "not_found", Api::Rest),
    (404, "session_not_found", Api::Rest),
    (404, "execution_not_found", Api::Rest),
    (404, "context_not_found", Api::Rest),
    (404, "process_not_found", Api::Rest),
    (404, "template_not_found", Api::Rest),
    (404, "file_not_found", Api::Rest),
    (404, "key_not_found", Api::Rest),
    (404, "watcher_not_found", Api::Rest),
    (404, "sandbox_not_found", Api::E2b),
    (405, "method_not_allowed", Api::Rest),
    (409, "session_exists", Api::Rest),
    (409, "session_not_running", Api::Rest),
    (409, "template_exists", Api::Rest),
    (409, "template_in_use", Api::Rest),
    (409, "template_not_ready", Api::Rest),
    (409, "template_pull_failed", Api::Rest),
    (409, "already_exists", Api::Rest),
    (409, "is_a_directory", Api::Rest),
    (409, "not_a_directory", Api::Rest),
    (409, "directory_not_empty", Api::Rest),
    (409, "cannot_revoke_own_key", Api::Rest),
    (409, "dependency_install_in_progress", Api::Rest),
    (409, "dependencies_failed", Api::Rest),
    (409, "context_busy", Api::Rest),
    (409, "context_lost", Api::Rest),
    (409, "process_exited", Api::Rest),
    (409, "process_conflict", Api::Rest),
    (409, "idempotency_key_in_use", Api::Rest),
    (409, "idempotency_key_used", Api::Rest),
    (409, "sandbox_outdated", Api::Rest),
    (409, "sandbox_not_paused", Api::E2b),
    (413, "payload_too_large", Api::Rest),
    (413, "code_too_large", Api::Rest),
    (415, "unsupported_media_type", Api::Rest),
    (422, "validation_error", Api::Rest),
    (422, "template_not_found", Api::Rest),
    (422, "template_image_missing", Api::Rest),
    (422, "index_not_allowed", Api::Rest),
    (422, "package_not_found", Api::Rest),
    (422, "dependency_install_failed", Api::Rest),
    (422, "not_a_regular_file", Api::Rest),
    (422, "language_unavailable", Api::Rest),
    (422, "idempotency_key_reused", Api::Rest),
    (422, "invalid_egress_pattern", Api::Rest),
    (422, "invalid_egress_policy", Api::Rest),
    (422, "egress_not_permitted", Api::Rest),
    (429, "too_many_executions", Api::Rest),
    (429, "quota_exceeded", Api::Rest),
    (429, "too_many_contexts", Api::Rest),
    (429, "too_many_processes", Api::Rest),
    (429, "too_many_watchers", Api::Rest),
    (500, "internal_error", Api::Rest),
    (501, "dependencies_unsupported", Api::Rest),
    (501, "pause_unsupported", Api::E2b),
    (502, "sandbox_error", Api::Rest),
    (502, "package_index_unreachable", Api::Rest),
    (503, "sandbox_start_failed", Api::Rest),
    (503, "sandbox_unavailable", Api::Rest),
    (503, "runtime_unavailable", Api::Rest),
    (503, "capacity_exhausted", Api::Rest),
    (503, "storage_unavailable", Api::Rest),
    (503, "installer_unavailable", Api::Rest),
    (503, "dependencies_installing", Api::Rest),
    (504, "dependency_install_timeout", Api::Rest),
    (507, "workspace_full", Api::Rest),
];

/// Whether `code` with `status` is in [`ERROR_CODES`].
pub fn registered(status: StatusCode, code: &str) -> bool {
    ERROR_CODES.iter().any(|&(s, c, _)| s == status.as_u16() && c == code)
}

/// The OpenAPI schema of `ErrorBody.code`: the REST API's codes.
fn error_code_schema() -> utoipa::openapi::Object {
    let mut codes: Vec<&str> =
        ERROR_CODES.iter().filter(|(_, _, api)| *api == Api::Rest).map(|&(_, c, _)| c).collect();
    codes.sort_unstable();
    codes.dedup();
    crate::api::types::string_enum("Stable machine-readable code (see the API guide's table).", codes)
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`session_not_found`, `validation_error`, ...).
    #[schema(schema_with = error_code_schema)]
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
        debug_assert!(registered(status, code), "{status} {code} is not in ERROR_CODES");
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

/// The stable code an error response carries, kept in the response's extensions for the access
/// log (every API's errors: REST, E2B and Connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        resp.extensions_mut().insert(AnsweredCode(self.code));
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
        resp.extensions_mut().insert(AnsweredCode(e.code));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn doc(name: &str) -> String {
        std::fs::read_to_string(format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_api_guide_lists_every_rest_error_code_with_its_status() {
        let guide = doc("api.md");
        let table = &guide[guide.find("| status | codes |").unwrap()..];
        let mut documented = BTreeSet::new();
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let mut cells = line.split('|').skip(1);
            let status: u16 = cells.next().unwrap().trim().parse().unwrap();
            let codes = cells.next().unwrap().split('`').skip(1).step_by(2);
            // Header names (`Retry-After`) are not codes.
            for code in codes.filter(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) {
                documented.insert((status, code.to_owned()));
            }
        }
        let registered: BTreeSet<(u16, String)> = ERROR_CODES
            .iter()
            .filter(|(_, _, api)| *api == Api::Rest)
            .map(|&(s, c, _)| (s, c.to_owned()))
            .collect();
        assert_eq!(documented, registered, "docs/api.md's error table and ERROR_CODES differ");
    }

    #[test]
    fn the_e2b_guide_names_every_code_of_its_own() {
        let guide = doc("e2b.md");
        for (_, code, _) in ERROR_CODES.iter().filter(|(_, _, api)| *api == Api::E2b) {
            assert!(guide.contains(&format!("`{code}`")), "docs/e2b.md does not name {code}");
        }
    }

    #[test]
    fn every_code_is_registered_once_per_status() {
        let mut seen = BTreeSet::new();
        for &(s, c, _) in ERROR_CODES {
            assert!(StatusCode::from_u16(s).is_ok_and(|s| s.is_client_error() || s.is_server_error()));
            assert!(seen.insert((s, c)), "{s} {c} twice");
            assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
        }
    }
}
