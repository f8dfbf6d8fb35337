//! A subscriber's events: `start` first, then the output written since it attached (with
//! keepalives while there is none), then the process's `end`.

use super::Subscription;
use futures_util::Stream;
use sandbox_protocol::ProcessEvent;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long a stream stays silent before it sends a keepalive.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

enum Phase {
    Start,
    Live,
    End,
    Done,
}

impl Subscription {
    /// The events, ending after `end`.
    pub fn into_events(self) -> impl Stream<Item = ProcessEvent> + Send + 'static {
        futures_util::stream::unfold((self, Phase::Start), |(mut sub, phase)| async move {
            match phase {
                Phase::Start => {
                    let next = if sub.events.is_some() { Phase::Live } else { Phase::End };
                    Some((ProcessEvent::Start { pid: sub.process.pid() }, (sub, next)))
                }
                Phase::Live => {
                    let rx = sub.events.as_mut()?;
                    loop {
                        match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                            Err(_) => return Some((ProcessEvent::Keepalive, (sub, Phase::Live))),
                            Ok(Ok(ev)) => return Some((ev, (sub, Phase::Live))),
                            Ok(Err(RecvError::Lagged(n))) => {
                                tracing::debug!(
                                    pid = sub.process.pid(),
                                    dropped = n,
                                    "a slow subscriber lost output"
                                );
                            }
                            // The process has ended and its last output was read.
                            Ok(Err(RecvError::Closed)) => return ending(sub),
                        }
                    }
                }
                Phase::End => ending(sub),
                Phase::Done => None,
            }
        })
    }
}

/// The end event, last.
fn ending(sub: Subscription) -> Option<(ProcessEvent, (Subscription, Phase))> {
    let end = sub.process.end()?;
    Some((ProcessEvent::End(end), (sub, Phase::Done)))
}
