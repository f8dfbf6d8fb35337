//! [`WorkspaceBucket`]: session workspaces as objects under `{prefix}{session}/` in one bucket.

use crate::error::{ErrorContext, StorageError, is_missing_key};
use crate::keys::{file_key, session_root, workspace_path};
use crate::settings::S3Settings;
use crate::upload::{UploadError, upload};
use crate::{ByteStream, StoredFile};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use sandbox_core::workspace_path::WorkspacePath;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How many attempts a failed request gets after the first, all within the request timeout.
const MAX_RETRIES: usize = 3;
/// The longest lifetime S3 accepts for a presigned URL.
const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many server-side copies [`WorkspaceBucket::copy_session`] runs at once.
const COPY_CONCURRENCY: usize = 8;

/// A connected workspace bucket. Cloning is cheap (one `Arc`); clones share connections.
#[derive(Clone)]
pub struct WorkspaceBucket {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    /// Signs download URLs for the public endpoint; `None` when none is configured.
    public_signer: Option<AmazonS3>,
    prefix: String,
    part_size: usize,
    errors: ErrorContext,
}

impl fmt::Debug for WorkspaceBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceBucket")
            .field("endpoint", &self.inner.errors.endpoint)
            .field("bucket", &self.inner.errors.bucket)
            .field("prefix", &self.inner.prefix)
            .field("presigns", &self.inner.public_signer.is_some())
            .finish_non_exhaustive()
    }
}

impl WorkspaceBucket {
    /// Checks `settings`, then proves the bucket is reachable and the credentials work by
    /// listing at most one key under the prefix.
    ///
    /// Fails with [`StorageError::InvalidConfig`] before any request for settings that cannot
    /// work, else with [`StorageError::Unreachable`], [`StorageError::Unauthorized`] or
    /// [`StorageError::NoSuchBucket`] naming the endpoint and bucket.
    pub async fn connect(settings: S3Settings) -> Result<Self, StorageError> {
        settings.validate()?;
        let errors = ErrorContext::new(
            settings.endpoint_display(),
            settings.bucket.clone(),
            settings.secret_access_key.clone(),
        );
        let store = build_store(&settings, settings.endpoint.as_deref(), &errors)?;
        let public_signer = match &settings.public_endpoint {
            Some(endpoint) => Some(build_store(&settings, Some(endpoint), &errors)?),
            None => None,
        };
        let bucket = WorkspaceBucket {
            inner: Arc::new(Inner {
                store,
                public_signer,
                prefix: settings.prefix.clone(),
                part_size: settings.part_size(),
                errors,
            }),
        };
        bucket.check().await?;
        tracing::info!(
            endpoint = %bucket.inner.errors.endpoint,
            bucket = %bucket.inner.errors.bucket,
            prefix = %bucket.inner.prefix,
            "workspace bucket connected"
        );
        Ok(bucket)
    }

    /// Lists at most one key under the prefix: succeeds only if the endpoint answers, the
    /// bucket exists and the credentials may list it.
    pub async fn check(&self) -> Result<(), StorageError> {
        let prefix = (!self.inner.prefix.is_empty()).then_some(self.inner.prefix.as_str());
        let options = PaginatedListOptions { max_keys: Some(1), ..PaginatedListOptions::default() };
        self.inner.store.list_paginated(prefix, options).await.map_err(|e| self.inner.errors.map(e, None))?;
        Ok(())
    }

    /// Every file stored for `session`, sorted by path (empty for an unknown session).
    ///
    /// Keys under the session that no workspace path maps to (written by something else) are
    /// skipped with a warning.
    pub async fn list(&self, session: &str) -> Result<Vec<StoredFile>, StorageError> {
        let root = self.root(session)?;
        let mut files: Vec<StoredFile> = self
            .inner
            .store
            .list(Some(&root))
            .map_err(|e| self.inner.errors.map(e, None))
            .try_filter_map(|meta| {
                let file = match workspace_path(&root, &meta.location) {
                    Some(path) => Some(StoredFile { path, size: meta.size, modified_at: meta.last_modified }),
                    None => {
                        tracing::warn!(key = %meta.location, "skipping a key that names no workspace path");
                        None
                    }
                };
                std::future::ready(Ok(file))
            })
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Opens `path` of `session` for reading: its size and a stream of its bytes.
    ///
    /// A missing file is [`StorageError::NotFound`]. The stream fails (rather than ends early)
    /// if the connection breaks after the retries object_store makes for reads.
    pub async fn read(&self, session: &str, path: &WorkspacePath) -> Result<(u64, ByteStream), StorageError> {
        let key = file_key(&self.root(session)?, path)?;
        let missing = || StorageError::NotFound { session: session.to_owned(), path: path.to_string() };
        let result =
            self.inner.store.get(&key).await.map_err(|e| self.inner.errors.map(e, Some(&missing)))?;
        let size = result.meta.size;
        let stream: ByteStream = Box::pin(result.into_stream().map_err(std::io::Error::from));
        Ok((size, stream))
    }

    /// Stores `content` as `path` of `session`, replacing any previous file, and returns the
    /// number of bytes written.
    ///
    /// Streams: up to one part is buffered and sent with one PUT; a longer stream becomes a
    /// multipart upload holding at most about two parts in memory whatever its length. The new
    /// content becomes visible all at once when the upload completes; if `content` fails
    /// ([`StorageError::Input`]) or the store does, the upload is aborted and the previous
    /// file, if any, is left as it was.
    pub async fn write(
        &self,
        session: &str,
        path: &WorkspacePath,
        content: ByteStream,
    ) -> Result<u64, StorageError> {
        let key = file_key(&self.root(session)?, path)?;
        upload(&self.inner.store, &key, content, self.inner.part_size).await.map_err(|e| match e {
            UploadError::Input(e) => StorageError::Input(e),
            UploadError::Store(e) => self.inner.errors.map(e, None),
        })
    }

    /// Deletes `path` of `session`; a file that does not exist is not an error.
    pub async fn delete(&self, session: &str, path: &WorkspacePath) -> Result<(), StorageError> {
        let key = file_key(&self.root(session)?, path)?;
        match self.inner.store.delete(&key).await {
            Ok(()) => Ok(()),
            // S3 answers 204 for a missing key; some compatible stores answer 404.
            Err(e) if is_missing_key(&e) => Ok(()),
            Err(e) => Err(self.inner.errors.map(e, None)),
        }
    }

    /// Deletes every object under the session's prefix and returns how many there were.
    pub async fn delete_session(&self, session: &str) -> Result<u64, StorageError> {
        let root = self.root(session)?;
        let locations = self.inner.store.list(Some(&root)).map_ok(|meta| meta.location).boxed();
        let deleted = self
            .inner
            .store
            .delete_stream(locations)
            .map_err(|e| self.inner.errors.map(e, None))
            .try_fold(0u64, |n, _| std::future::ready(Ok(n + 1)))
            .await?;
        tracing::debug!(session, deleted, "deleted a stored workspace");
        Ok(deleted)
    }

    /// Copies every file of session `from` to session `to` with server-side copies and returns
    /// how many were copied. Files of `to` that `from` lacks are left alone.
    pub async fn copy_session(&self, from: &str, to: &str) -> Result<u64, StorageError> {
        let (source, target) = (self.root(from)?, self.root(to)?);
        if source == target {
            return Err(StorageError::InvalidArgument(format!("cannot copy session {from} onto itself")));
        }
        let store = &self.inner.store;
        let copied = store
            .list(Some(&source))
            .map_err(|e| self.inner.errors.map(e, None))
            .map_ok(|meta| {
                let (source, target) = (&source, &target);
                async move {
                    let suffix = meta.location.prefix_match(source).into_iter().flatten();
                    let dest = suffix.fold(target.clone(), |key, part| key.join(part));
                    store.copy(&meta.location, &dest).await.map_err(|e| self.inner.errors.map(e, None))
                }
            })
            .try_buffer_unordered(COPY_CONCURRENCY)
            .try_fold(0u64, |n, ()| std::future::ready(Ok(n + 1)))
            .await?;
        tracing::debug!(from, to, copied, "copied a stored workspace");
        Ok(copied)
    }

    /// A URL on the public endpoint that lets anyone holding it download `path` of `session`
    /// for `ttl` (1 s to 7 days), or `None` when no public endpoint is configured.
    ///
    /// Signing is local computation with the configured static credentials: nothing is sent,
    /// so the file is not checked to exist.
    pub fn presigned_download(
        &self,
        session: &str,
        path: &WorkspacePath,
        ttl: Duration,
    ) -> Option<Result<String, StorageError>> {
        let signer = self.inner.public_signer.as_ref()?;
        Some(self.presign(signer, session, path, ttl))
    }

    fn presign(
        &self,
        signer: &AmazonS3,
        session: &str,
        path: &WorkspacePath,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        use futures_util::FutureExt;
        let key = file_key(&self.root(session)?, path)?;
        if ttl < Duration::from_secs(1) || ttl > MAX_PRESIGN_TTL {
            return Err(StorageError::InvalidArgument(format!(
                "a presigned URL must live from 1 s to 7 days, not {ttl:?}"
            )));
        }
        // With static credentials the signing future never waits on anything; `now_or_never`
        // keeps this callable from synchronous code.
        match signer.signed_url(http::Method::GET, &key, ttl).now_or_never() {
            Some(Ok(url)) => Ok(url.to_string()),
            Some(Err(e)) => Err(self.inner.errors.map(e, None)),
            None => Err(StorageError::Other {
                endpoint: self.inner.errors.endpoint.clone(),
                bucket: self.inner.errors.bucket.clone(),
                detail: "signing a download URL did not complete synchronously".to_owned(),
            }),
        }
    }

    fn root(&self, session: &str) -> Result<Path, StorageError> {
        session_root(&self.inner.prefix, session)
    }
}

/// An S3 client for `endpoint` (the configured one, or the public one for signing).
fn build_store(
    settings: &S3Settings,
    endpoint: Option<&str>,
    errors: &ErrorContext,
) -> Result<AmazonS3, StorageError> {
    let timeout = settings.request_timeout();
    // The request timeout bounds connecting, waiting for response headers and each read of a
    // body, not a whole download: a large file may take longer as long as it keeps flowing.
    let options = ClientOptions::new()
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
        .with_connect_timeout(timeout)
        .with_read_timeout(timeout)
        .with_timeout_disabled();
    let retry =
        RetryConfig { backoff: BackoffConfig::default(), max_retries: MAX_RETRIES, retry_timeout: timeout };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key)
        .with_virtual_hosted_style_request(!settings.path_style)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(bucket_endpoint(endpoint, &settings.bucket, settings.path_style));
    }
    builder.build().map_err(|e| {
        let detail = e.to_string().replace(&settings.secret_access_key, "<redacted>");
        StorageError::InvalidConfig(format!(
            "cannot build an S3 client for bucket `{}` at {}: {detail}",
            errors.bucket, errors.endpoint
        ))
    })
}

/// object_store wants virtual-hosted endpoints with the bucket already in the host name.
fn bucket_endpoint(endpoint: &str, bucket: &str, path_style: bool) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) if !path_style => format!("{scheme}://{bucket}.{host}"),
        _ => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        assert_eq!(bucket_endpoint("http://127.0.0.1:9000", "b", true), "http://127.0.0.1:9000");
        assert_eq!(bucket_endpoint("https://s3.example.com", "b", false), "https://b.s3.example.com");
    }
}
