//! Streaming uploads: one PUT up to a part, else a multipart upload holding at most two parts.

use crate::ByteStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload, PutPayloadMut};
use tokio::task::JoinHandle;

/// Input chunks smaller than this are copied into shared blocks of this size rather than kept
/// as they are, so a stream of tiny chunks does not cost one allocation (and one retained
/// buffer) per chunk.
const COPY_BELOW: usize = 64 * 1024;

fn new_part() -> PutPayloadMut {
    PutPayloadMut::new().with_block_size(COPY_BELOW)
}

/// Why an upload failed: the input stream, or the store.
pub(crate) enum UploadError {
    Input(std::io::Error),
    Store(object_store::Error),
}

impl From<object_store::Error> for UploadError {
    fn from(e: object_store::Error) -> Self {
        UploadError::Store(e)
    }
}

/// Writes `content` to `key` and returns the number of bytes written.
///
/// Up to `part_size` bytes are buffered; a stream that ends by then is written with one PUT.
/// A longer one becomes a multipart upload in which one part uploads while the next fills, so
/// at most two parts (plus one input chunk) are held whatever the size. The object appears only
/// when the upload completes: any failure, of the input or of the store, aborts it.
pub(crate) async fn upload(
    store: &AmazonS3,
    key: &Path,
    mut content: ByteStream,
    part_size: usize,
) -> Result<u64, UploadError> {
    let mut part = new_part();
    let mut multipart: Option<Multipart> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = content.next().await {
        let mut chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                if let Some(multipart) = multipart {
                    multipart.abort(key).await;
                }
                return Err(UploadError::Input(e));
            }
        };
        total += chunk.len() as u64;
        while !chunk.is_empty() {
            // A full part is sent only once more data shows it is not the last one, so a
            // stream of exactly one part still goes as a single PUT.
            if part.content_length() == part_size {
                let full = std::mem::replace(&mut part, new_part()).freeze();
                let mp = match &mut multipart {
                    Some(mp) => mp,
                    None => multipart.insert(Multipart::start(store, key).await?),
                };
                if let Err(e) = mp.send(full).await {
                    if let Some(multipart) = multipart {
                        multipart.abort(key).await;
                    }
                    return Err(e.into());
                }
            }
            let take = chunk.len().min(part_size - part.content_length());
            let piece = chunk.split_to(take);
            if piece.len() < COPY_BELOW {
                part.extend_from_slice(&piece);
            } else {
                part.push(piece);
            }
        }
    }
    let last = part.freeze();
    match multipart {
        None => {
            store.put(key, last).await?;
        }
        Some(mut mp) => {
            let finished = match mp.send(last).await {
                Ok(()) => mp.finish().await,
                Err(e) => Err(e),
            };
            if let Err(e) = finished {
                mp.abort(key).await;
                return Err(e.into());
            }
        }
    }
    Ok(total)
}

/// A multipart upload with at most one part in flight.
///
/// Dropped before [`finish`](Self::finish) (the caller's future was cancelled), it cancels the
/// part in flight and aborts the upload in the background.
struct Multipart {
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: Option<JoinHandle<object_store::Result<()>>>,
}

impl Multipart {
    async fn start(store: &AmazonS3, key: &Path) -> object_store::Result<Self> {
        Ok(Multipart { upload: Some(store.put_multipart(key).await?), in_flight: None })
    }

    /// Waits for the part in flight, then starts uploading `part` in the background.
    async fn send(&mut self, part: PutPayload) -> object_store::Result<()> {
        self.wait().await?;
        if let Some(upload) = &mut self.upload {
            self.in_flight = Some(tokio::spawn(upload.put_part(part)));
        }
        Ok(())
    }

    /// Waits for the part in flight, if any.
    async fn wait(&mut self) -> object_store::Result<()> {
        match self.in_flight.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }

    /// Waits for the last part and completes the upload, making the object visible.
    async fn finish(&mut self) -> object_store::Result<()> {
        self.wait().await?;
        if let Some(upload) = &mut self.upload {
            upload.complete().await?;
        }
        self.upload = None;
        Ok(())
    }

    /// Cancels the part in flight and aborts the upload so no parts are left behind.
    async fn abort(mut self, key: &Path) {
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
        }
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(key = %key, error = %e, "aborting a failed multipart upload failed");
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
        }
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "aborting an abandoned multipart upload failed");
                }
            });
        }
    }
}
