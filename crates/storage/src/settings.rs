//! [`S3Settings`]: where the workspace bucket is and how to reach it.

use crate::error::StorageError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The smallest part S3 accepts for every part of a multipart upload but the last, in MiB.
const MIN_PART_SIZE_MB: u64 = 5;
/// The largest part S3 accepts, in MiB (5 GiB).
const MAX_PART_SIZE_MB: u64 = 5 * 1024;

/// How to reach the S3-compatible bucket that holds session workspaces.
///
/// Every field has a default (`#[serde(default)]`), so a configuration file only names what
/// differs. The secret never appears in `Debug` output or in any error message; it *is*
/// serialized, so that a configuration can be written back out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Base URL of the S3 API, e.g. `http://127.0.0.1:9000` for MinIO. `None` means AWS S3
    /// itself (`https://s3.{region}.amazonaws.com`). `http://` endpoints are allowed.
    pub endpoint: Option<String>,
    /// The bucket; it must already exist. Default `sandbox-workspace`.
    pub bucket: String,
    /// The region requests are signed for. Default `us-east-1` (what MinIO expects).
    pub region: String,
    /// Access key id. Required: without static credentials nothing is signed.
    pub access_key_id: String,
    /// Secret access key. Required; redacted from `Debug` output and from errors.
    pub secret_access_key: String,
    /// Path-style requests (`{endpoint}/{bucket}/{key}`) rather than virtual-hosted style
    /// (`{bucket}.{host}/{key}`). Default `true`, what MinIO and s3s expect.
    pub path_style: bool,
    /// Prepended to every key: a session's files live under `{prefix}{session}/`. Default
    /// `sessions/`. May be empty; must not start with `/` nor contain `//`.
    pub prefix: String,
    /// If set, downloads may be answered with a presigned URL on this endpoint (the address
    /// clients can reach, e.g. `https://files.example.com`); if `None`, nothing is presigned.
    pub public_endpoint: Option<String>,
    /// Size of each part of a multipart upload in MiB (5 to 5120). Files up to one part are
    /// written with a single PUT. An upload holds at most about two parts in memory. Default 8.
    pub multipart_part_size_mb: u64,
    /// Seconds allowed to connect, and for each request to get its response headers (a part
    /// upload included) and between two reads of a streamed download. Failed requests are
    /// retried a few times within this same budget. Default 30.
    pub request_timeout_secs: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            bucket: "sandbox-workspace".to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: true,
            prefix: "sessions/".to_owned(),
            public_endpoint: None,
            multipart_part_size_mb: 8,
            request_timeout_secs: 30,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("public_endpoint", &self.public_endpoint)
            .field("multipart_part_size_mb", &self.multipart_part_size_mb)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .finish()
    }
}

impl S3Settings {
    /// The endpoint as it appears in messages: the configured one, or AWS's for the region.
    pub fn endpoint_display(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// The multipart part size in bytes.
    pub(crate) fn part_size(&self) -> usize {
        // Validated to at most 5 GiB, which fits a 64-bit usize.
        usize::try_from(self.multipart_part_size_mb * 1024 * 1024).unwrap_or(usize::MAX)
    }

    /// The per-request timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Refuses settings that cannot work, before any request is made.
    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        let invalid = |msg: String| Err(StorageError::InvalidConfig(msg));
        if self.bucket.is_empty() {
            return invalid("bucket must not be empty".to_owned());
        }
        if self.region.is_empty() {
            return invalid("region must not be empty".to_owned());
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return invalid(format!(
                "access_key_id and secret_access_key are both required for bucket `{}` at {}",
                self.bucket,
                self.endpoint_display()
            ));
        }
        for (name, url) in [("endpoint", &self.endpoint), ("public_endpoint", &self.public_endpoint)] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return invalid(format!("{name} must be an http:// or https:// URL, got `{url}`"));
            }
        }
        if !(MIN_PART_SIZE_MB..=MAX_PART_SIZE_MB).contains(&self.multipart_part_size_mb) {
            return invalid(format!(
                "multipart_part_size_mb must be between {MIN_PART_SIZE_MB} and {MAX_PART_SIZE_MB}, got {}",
                self.multipart_part_size_mb
            ));
        }
        if self.request_timeout_secs == 0 {
            return invalid("request_timeout_secs must be at least 1".to_owned());
        }
        crate::keys::validate_prefix(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> S3Settings {
        S3Settings {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            ..S3Settings::default()
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let s: S3Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, S3Settings::default());
        assert_eq!(s.bucket, "sandbox-workspace");
        assert_eq!(s.region, "us-east-1");
        assert!(s.path_style);
        assert_eq!(s.prefix, "sessions/");
        assert_eq!(s.multipart_part_size_mb, 8);
        assert_eq!(s.request_timeout_secs, 30);
        assert_eq!(s.endpoint_display(), "https://s3.us-east-1.amazonaws.com");
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown = format!("{:?}", valid());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("AKID"), "{shown}");
    }

    #[test]
    fn validation_refuses_what_cannot_work() {
        assert!(valid().validate().is_ok());
        let cases = [
            S3Settings { bucket: String::new(), ..valid() },
            S3Settings { secret_access_key: String::new(), ..valid() },
            S3Settings { access_key_id: String::new(), ..valid() },
            S3Settings { multipart_part_size_mb: 4, ..valid() },
            S3Settings { multipart_part_size_mb: 5121, ..valid() },
            S3Settings { request_timeout_secs: 0, ..valid() },
            S3Settings { endpoint: Some("127.0.0.1:9000".into()), ..valid() },
            S3Settings { public_endpoint: Some("ftp://x".into()), ..valid() },
            S3Settings { prefix: "/abs/".into(), ..valid() },
            S3Settings { prefix: "a//b/".into(), ..valid() },
        ];
        for settings in cases {
            let err = settings.validate().unwrap_err();
            assert_eq!(err.code(), "invalid_config", "{settings:?}");
            assert!(!err.to_string().contains("very-secret"));
        }
        assert!(S3Settings { prefix: String::new(), ..valid() }.validate().is_ok());
        assert!(S3Settings { prefix: "a/b/".into(), ..valid() }.validate().is_ok());
    }
}
