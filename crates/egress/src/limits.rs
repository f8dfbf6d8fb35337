//! Per-session limits, their defaults, and the token bucket that holds a session's bandwidth.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Default for the connections one session may have open at once (CONNECT tunnels and
/// forwarded requests in flight); one more is refused with 429 and audited as `denied_limit`.
/// npm opens up to 15 sockets to the registry and pip a handful; 64 leaves room for both.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default bandwidth of one session, KiB/s, upload and download counted together: 16 MiB/s
/// (a 100 MiB wheel in about 6 s). `0` in the settings: no limit.
pub const DEFAULT_BANDWIDTH_KIB_PER_SEC: u64 = 16 * 1024;

/// Default time to resolve a name and connect to it, seconds; past it the client gets 504.
pub const DEFAULT_CONNECT_TIMEOUT_SEC: u64 = 10;

/// Default time a connection to a destination may pass with no byte either way before the
/// proxy closes it, seconds. Generous, for servers that think before they answer (a large git
/// fetch, a slow build API).
pub const DEFAULT_IDLE_TIMEOUT_SEC: u64 = 300;

/// Client connections a session's listener accepts at once, per connection it may open: idle
/// keep-alive connections from the sandbox are bounded too, but a session at its connection
/// limit still gets its 429 instead of waiting unanswered.
pub const CLIENT_CONNECTIONS_PER_CONNECTION: usize = 2;

/// Client connections a shared listener ([`crate::Proxy::serve_shared`]) accepts at once, all
/// sandboxes together, before each is bounded by its session's own share.
pub const SHARED_CLIENT_CONNECTIONS: usize = 16_384;

/// How long a client may take to send a request's head (and how long a kept-alive client
/// connection may wait for its next request) before the proxy closes it.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits one session's proxy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (at least 1).
    pub max_connections: usize,
    /// Bytes per second, both directions together; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Time to resolve and connect.
    pub connect_timeout: Duration,
    /// Time without traffic before a connection to a destination is closed.
    pub idle_timeout: Duration,
}

/// A token bucket of bytes: it holds up to one second of its rate and refills continuously.
/// Every session has its own, shared by all its connections and both directions, and its lock is
/// held only for arithmetic, never across I/O: a session that floods the proxy waits on its own
/// bucket and leaves the others alone.
/// Transfers take what they moved after the fact, so the bucket may go into debt by one read or
/// write; the next transfer on any of the session's connections waits until the debt is paid.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `bytes_per_sec` (at least 1).
    pub(crate) fn new(bytes_per_sec: u64) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        TokenBucket { rate, state: Mutex::new(BucketState { tokens: rate, updated: Instant::now() }) }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut BucketState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.rate);
        state.updated = now;
        f(&mut state)
    }

    /// Takes `bytes` that were just moved.
    pub(crate) fn take(&self, bytes: usize) {
        self.with_state(|state| state.tokens -= bytes as f64);
    }

    /// How long until the bucket is out of debt, or `None` when a transfer may go now.
    pub(crate) fn delay(&self) -> Option<Duration> {
        self.with_state(|state| {
            (state.tokens < 0.0).then(|| Duration::from_secs_f64(-state.tokens / self.rate))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lends_one_second_and_refills_at_its_rate() {
        let bucket = TokenBucket::new(1000);
        assert_eq!(bucket.delay(), None, "a new bucket is full");
        bucket.take(1000);
        assert_eq!(bucket.delay(), None, "emptied, not in debt");
        bucket.take(500);
        assert_eq!(bucket.delay(), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(bucket.delay(), Some(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(bucket.delay(), None);
        // A long pause refills no more than one second's worth.
        tokio::time::advance(Duration::from_secs(60)).await;
        bucket.take(1999);
        assert_eq!(bucket.delay(), Some(Duration::from_micros(999_000)));
    }

    /// Over a simulated minute, transfers that wait for the bucket move the rate and one burst.
    #[tokio::test(start_paused = true)]
    async fn transfers_that_wait_get_the_rate() {
        let bucket = TokenBucket::new(64 * 1024);
        let start = Instant::now();
        let mut moved = 0u64;
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(wait) = bucket.delay() {
                tokio::time::sleep(wait).await;
            }
            bucket.take(16 * 1024);
            moved += 16 * 1024;
        }
        let expected = 61 * 64 * 1024;
        assert!(moved.abs_diff(expected) <= 32 * 1024, "moved {moved}, expected about {expected}");
    }
}
