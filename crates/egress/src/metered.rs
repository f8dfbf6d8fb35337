//! A connection to a destination that counts its bytes, obeys the session's bucket, notes activity.

use crate::limits::TokenBucket;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What moved through one connection to a destination.
#[derive(Debug)]
pub(crate) struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
    origin: Instant,
    /// Milliseconds from `origin` to the last read or write.
    last_activity_ms: AtomicU64,
}

impl Traffic {
    pub(crate) fn new() -> Traffic {
        Traffic {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            origin: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    /// Bytes sent to the destination.
    pub(crate) fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    /// Bytes received from the destination.
    pub(crate) fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    fn moved(&self, counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        self.active_until(Instant::now());
    }

    /// Counts the connection as active until `instant` (a transfer waiting for the session's
    /// bucket is not idle).
    fn active_until(&self, instant: Instant) {
        let ms = instant.saturating_duration_since(self.origin).as_millis() as u64;
        self.last_activity_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Completes once no byte has moved either way for `timeout`.
    pub(crate) async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream to a destination, metered and throttled.
pub(crate) struct Metered<S> {
    inner: S,
    traffic: Arc<Traffic>,
    bucket: Option<Arc<TokenBucket>>,
    read_wait: Option<Pin<Box<Sleep>>>,
    write_wait: Option<Pin<Box<Sleep>>>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, traffic: Arc<Traffic>, bucket: Option<Arc<TokenBucket>>) -> Metered<S> {
        Metered { inner, traffic, bucket, read_wait: None, write_wait: None }
    }
}

/// Ready once the bucket (if any) is out of debt, sleeping in `wait` meanwhile.
fn poll_bucket(
    bucket: Option<&TokenBucket>,
    traffic: &Traffic,
    wait: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let Some(bucket) = bucket else { return Poll::Ready(()) };
    loop {
        if let Some(sleep) = wait {
            ready!(sleep.as_mut().poll(cx));
            *wait = None;
        }
        match bucket.delay() {
            None => return Poll::Ready(()),
            Some(delay) => {
                let until = Instant::now() + delay;
                traffic.active_until(until);
                *wait = Some(Box::pin(tokio::time::sleep_until(until)));
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(poll_bucket(this.bucket.as_deref(), &this.traffic, &mut this.read_wait, cx));
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        this.traffic.moved(&this.traffic.down, read);
        if let Some(bucket) = &this.bucket {
            bucket.take(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(poll_bucket(this.bucket.as_deref(), &this.traffic, &mut this.write_wait, cx));
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        this.traffic.moved(&this.traffic.up, written);
        if let Some(bucket) = &this.bucket {
            bucket.take(written);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn bytes_are_counted_and_throttled_both_ways() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let traffic = Arc::new(Traffic::new());
        let bucket = Arc::new(TokenBucket::new(1000));
        let mut metered = Metered::new(near, traffic.clone(), Some(bucket.clone()));
        let start = Instant::now();
        // The bucket starts full (1000 bytes): the write goes at once and leaves a debt of 500.
        metered.write_all(&[1; 1500]).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        far.write_all(&[2; 1500]).await.unwrap();
        // The read waits for that debt (0.5 s), then leaves one of 1500.
        let mut got = vec![0; 1500];
        metered.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [2; 1500]);
        assert_eq!((traffic.up(), traffic.down()), (1500, 1500));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(510), "{waited:?}");
        let debt = bucket.delay().unwrap();
        assert!(debt > Duration::from_millis(1490) && debt <= Duration::from_millis(1500), "{debt:?}");
        let mut sent = vec![0; 1500];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent, [1; 1500]);
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_is_measured_from_the_last_byte() {
        let (near, mut far) = tokio::io::duplex(64);
        let traffic = Arc::new(Traffic::new());
        let mut metered = Metered::new(near, traffic.clone(), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        metered.write_all(b"x").await.unwrap();
        far.read_exact(&mut [0]).await.unwrap();
        let start = Instant::now();
        traffic.idle(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    /// A transfer that waits for the bucket longer than the idle timeout is not idle.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_bucket_is_not_idleness() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let traffic = Arc::new(Traffic::new());
        let mut metered = Metered::new(near, traffic.clone(), Some(Arc::new(TokenBucket::new(100))));
        metered.write_all(&[0; 1100]).await.unwrap(); // 10 s of debt
        let start = Instant::now();
        let write = async {
            metered.write_all(b"x").await.unwrap();
            start.elapsed()
        };
        let idle = async {
            traffic.idle(Duration::from_secs(5)).await;
            start.elapsed()
        };
        let (written, idle) = tokio::join!(write, idle);
        assert_eq!(written, Duration::from_secs(10));
        assert_eq!(idle, Duration::from_secs(15), "idle from the end of the wait");
        let mut all = vec![0; 1101];
        far.read_exact(&mut all).await.unwrap();
    }
}
