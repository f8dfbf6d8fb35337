//! [`StorageError`] and the mapping of object store failures onto it.

use object_store::client::{HttpError, HttpErrorKind};
use std::error::Error as _;

/// Why a workspace storage operation failed. Each variant has a stable [`code`](Self::code).
///
/// Messages about the bucket name the endpoint and the bucket; none contains the secret key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file does not exist in the session's stored workspace.
    #[error("no file `{path}` in the stored workspace of session {session}")]
    NotFound {
        /// The session.
        session: String,
        /// The workspace path asked for.
        path: String,
    },
    /// The endpoint could not be reached in time (refused, reset, timed out, DNS).
    #[error("object storage at {endpoint} (bucket `{bucket}`) is unreachable: {detail}")]
    Unreachable {
        /// The endpoint as configured (or AWS's).
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the HTTP client reported.
        detail: String,
    },
    /// The credentials were refused (403/401: `InvalidAccessKeyId`, `SignatureDoesNotMatch`,
    /// `AccessDenied`...).
    #[error("object storage at {endpoint} refused the credentials for bucket `{bucket}`: {detail}")]
    Unauthorized {
        /// The endpoint as configured (or AWS's).
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The S3 error code and message.
        detail: String,
    },
    /// The bucket does not exist (`NoSuchBucket`).
    #[error("bucket `{bucket}` does not exist at {endpoint}")]
    NoSuchBucket {
        /// The endpoint as configured (or AWS's).
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    /// The session id is not 1-64 characters of `[A-Za-z0-9_-]` (or cannot be used that way).
    #[error("invalid session: {0}")]
    InvalidSession(String),
    /// The workspace path cannot name a stored file (the workspace root).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// Another argument cannot be used (copying a session onto itself, a presigned URL
    /// lifetime outside 1 s to 7 days).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The settings cannot work; nothing was sent.
    #[error("invalid object storage settings: {0}")]
    InvalidConfig(String),
    /// The content stream given to [`write`](crate::WorkspaceBucket::write) failed; nothing was
    /// stored (a multipart upload already begun was aborted).
    #[error("reading the content to store failed: {0}")]
    Input(#[source] std::io::Error),
    /// Any other failure of the object store (unexpected status, malformed response...).
    #[error("object storage at {endpoint} (bucket `{bucket}`) failed: {detail}")]
    Other {
        /// The endpoint as configured (or AWS's).
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What went wrong.
        detail: String,
    },
}

impl StorageError {
    /// A stable, machine-readable code for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::NotFound { .. } => "not_found",
            StorageError::Unreachable { .. } => "storage_unreachable",
            StorageError::Unauthorized { .. } => "storage_unauthorized",
            StorageError::NoSuchBucket { .. } => "storage_no_such_bucket",
            StorageError::InvalidSession(_) => "invalid_session",
            StorageError::InvalidPath(_) => "invalid_path",
            StorageError::InvalidArgument(_) => "invalid_argument",
            StorageError::InvalidConfig(_) => "invalid_config",
            StorageError::Input(_) => "input_failed",
            StorageError::Other { .. } => "storage_error",
        }
    }
}

/// What kind of failure an object store error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    Unreachable,
    Unauthorized,
    NoSuchBucket,
    Other,
}

/// The longest detail kept from an underlying error (S3 error bodies can be long).
const MAX_DETAIL_CHARS: usize = 600;

/// Turns object store errors into [`StorageError`]s naming this bucket, never its secret.
#[derive(Clone)]
pub(crate) struct ErrorContext {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    secret: String,
}

impl ErrorContext {
    pub(crate) fn new(endpoint: String, bucket: String, secret: String) -> Self {
        ErrorContext { endpoint, bucket, secret }
    }

    /// Maps `err`; `missing` makes the error for a 404 that is not a missing bucket (`None`
    /// where a 404 is unexpected, e.g. for a list).
    pub(crate) fn map(
        &self,
        err: object_store::Error,
        missing: Option<&dyn Fn() -> StorageError>,
    ) -> StorageError {
        let (endpoint, bucket) = (self.endpoint.clone(), self.bucket.clone());
        match (classify(&err), missing) {
            (Kind::NotFound, Some(missing)) => missing(),
            (Kind::NoSuchBucket, _) => StorageError::NoSuchBucket { endpoint, bucket },
            (Kind::Unreachable, _) => {
                StorageError::Unreachable { endpoint, bucket, detail: self.detail(&err) }
            }
            (Kind::Unauthorized, _) => {
                let detail =
                    s3_code(&err.to_string()).map(str::to_owned).unwrap_or_else(|| self.detail(&err));
                StorageError::Unauthorized { endpoint, bucket, detail }
            }
            (Kind::NotFound | Kind::Other, _) => {
                StorageError::Other { endpoint, bucket, detail: self.detail(&err) }
            }
        }
    }

    /// The error's text, without the secret and cut to a readable length.
    fn detail(&self, err: &object_store::Error) -> String {
        let mut text = err.to_string();
        if !self.secret.is_empty() {
            text = text.replace(&self.secret, "<redacted>");
        }
        if text.chars().count() > MAX_DETAIL_CHARS {
            text = text.chars().take(MAX_DETAIL_CHARS).chain("...".chars()).collect();
        }
        text
    }
}

/// Whether `err` says the key does not exist (and not that the bucket does not).
pub(crate) fn is_missing_key(err: &object_store::Error) -> bool {
    classify(err) == Kind::NotFound
}

fn classify(err: &object_store::Error) -> Kind {
    // Transport failures first: no response means nothing else can be concluded.
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Timeout
                | HttpErrorKind::Request
                | HttpErrorKind::Interrupted => Kind::Unreachable,
                _ => Kind::Other,
            };
        }
        source = e.source();
    }
    // S3 error bodies carry a code that is more precise than the status.
    let text = err.to_string();
    match s3_code(&text) {
        Some("NoSuchBucket") => return Kind::NoSuchBucket,
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AccessDenied"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "AuthorizationHeaderMalformed"
            | "InvalidSecurity"
            | "AccountProblem"
            | "NotSignedUp",
        ) => return Kind::Unauthorized,
        Some("NoSuchKey") => return Kind::NotFound,
        _ => {}
    }
    match err {
        object_store::Error::NotFound { .. } => Kind::NotFound,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Kind::Unauthorized
        }
        // List and multipart requests report the status only in their text.
        _ if text.contains("status code: 403") || text.contains("status code: 401") => Kind::Unauthorized,
        _ => Kind::Other,
    }
}

/// The `<Code>` of an S3 XML error body quoted in `text`, if any.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic { store: "S3", source: text.to_owned().into() }
    }

    fn ctx() -> ErrorContext {
        ErrorContext::new("http://127.0.0.1:9".into(), "b".into(), "s3cr3t".into())
    }

    #[test]
    fn codes_are_stable() {
        let e = StorageError::NoSuchBucket { endpoint: "e".into(), bucket: "b".into() };
        assert_eq!(e.code(), "storage_no_such_bucket");
        assert_eq!(StorageError::Input(std::io::Error::other("x")).code(), "input_failed");
    }

    #[test]
    fn s3_codes_decide() {
        let body = |code: &str| generic(&format!("status code: 404: <Error><Code>{code}</Code></Error>"));
        assert_eq!(classify(&body("NoSuchBucket")), Kind::NoSuchBucket);
        assert_eq!(classify(&body("NoSuchKey")), Kind::NotFound);
        assert_eq!(classify(&body("SignatureDoesNotMatch")), Kind::Unauthorized);
        assert_eq!(
            classify(&generic("Server returned non-2xx status code: 403 Forbidden: ")),
            Kind::Unauthorized
        );
        assert_eq!(classify(&generic("status code: 500")), Kind::Other);
        let transport = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Connect, std::io::Error::other("refused"))),
        };
        assert_eq!(classify(&transport), Kind::Unreachable);
    }

    #[test]
    fn details_never_carry_the_secret() {
        let err = ctx().map(generic("failed with s3cr3t inside"), None);
        assert_eq!(err.code(), "storage_error");
        let text = err.to_string();
        assert!(!text.contains("s3cr3t") && text.contains("<redacted>"), "{text}");
        assert!(text.contains("http://127.0.0.1:9") && text.contains("`b`"), "{text}");
    }

    #[test]
    fn not_found_needs_a_meaning() {
        let missing = || StorageError::NotFound { session: "s".into(), path: "p".into() };
        let nf = || object_store::Error::NotFound { path: "p".into(), source: "404".into() };
        assert_eq!(ctx().map(nf(), Some(&missing)).code(), "not_found");
        assert_eq!(ctx().map(nf(), None).code(), "storage_error");
    }
}
