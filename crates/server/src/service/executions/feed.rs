//! Live feeds of the executions this process runs: every output chunk and display output,
//! numbered, then the finished execution, so a client can follow an execution from any point
//! and re-attach after a dropped stream without missing anything.

use futures_util::Stream;
use sandbox_core::model::Execution;
use sandbox_protocol::ExecEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a finished execution's feed stays, for clients re-attaching just after the end.
const KEPT_AFTER_END: Duration = Duration::from_secs(60);

/// One entry of a feed.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// Output or a display output, as it happened.
    Output(ExecEvent),
    /// The execution as stored when it ended; the last entry.
    Done(Box<Execution>),
    /// The task following the execution ended before it could store the end (a bug); the last
    /// entry.
    Lost,
}

/// Ends a feed with [`FeedEvent::Lost`] when dropped before the feed was closed: held by the task
/// that follows the execution, so a panic there does not leave followers waiting forever.
pub struct EndsFeed(pub Arc<Feed>);

impl Drop for EndsFeed {
    fn drop(&mut self) {
        if !self.0.ended() {
            self.0.push(FeedEvent::Lost);
        }
    }
}

/// The events of one execution so far.
pub struct Feed {
    log: Mutex<Vec<FeedEvent>>,
    len: watch::Sender<usize>,
}

impl Feed {
    fn new() -> Self {
        Feed { log: Mutex::new(Vec::new()), len: watch::channel(0).0 }
    }

    /// Whether the feed has its last entry.
    fn ended(&self) -> bool {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        matches!(log.last(), Some(FeedEvent::Done(_) | FeedEvent::Lost))
    }

    /// Appends an event and wakes the followers.
    pub fn push(&self, e: FeedEvent) {
        let len = {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            log.push(e);
            log.len()
        };
        self.len.send_replace(len);
    }

    /// The events from index `from` on, as they come, ending after [`FeedEvent::Done`]; each
    /// with its index.
    pub fn follow(self: Arc<Self>, from: usize) -> impl Stream<Item = (usize, FeedEvent)> + Send {
        let rx = self.len.subscribe();
        futures_util::stream::unfold((self, rx, from, false), |(feed, mut rx, next, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let event = feed.log.lock().unwrap_or_else(|p| p.into_inner()).get(next).cloned();
                if let Some(e) = event {
                    let done = matches!(e, FeedEvent::Done(_) | FeedEvent::Lost);
                    return Some(((next, e), (feed, rx, next + 1, done)));
                }
                if feed.ended() {
                    return None;
                }
                // The sender lives as long as the feed, which this stream holds.
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

/// The feeds of the executions running here, and of those that ended in the last minute.
#[derive(Default)]
pub struct Feeds {
    map: Mutex<HashMap<String, Arc<Feed>>>,
}

impl Feeds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Feed>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new feed for execution `id`.
    pub fn open(&self, id: &str) -> Arc<Feed> {
        let feed = Arc::new(Feed::new());
        self.map().insert(id.to_owned(), feed.clone());
        feed
    }

    /// The feed of execution `id`, if it runs (or recently ended) here.
    pub fn get(&self, id: &str) -> Option<Arc<Feed>> {
        self.map().get(id).cloned()
    }

    /// Ends execution `id`'s feed with its stored record; the feed goes a minute later.
    pub fn close(self: &Arc<Self>, id: &str, e: &Execution) {
        if let Some(feed) = self.get(id) {
            feed.push(FeedEvent::Done(Box::new(e.clone())));
        }
        let (feeds, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(KEPT_AFTER_END).await;
            feeds.map().remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use sandbox_protocol::StreamEvent;

    fn out(s: &str) -> FeedEvent {
        FeedEvent::Output(ExecEvent::Stream(StreamEvent::Stdout { data: s.into() }))
    }

    /// A follower from any point gets what came before it and what comes after, then the end.
    #[tokio::test]
    async fn followers_get_the_past_then_the_future_then_the_end() {
        let feeds = Arc::new(Feeds::default());
        let feed = feeds.open("e1");
        feed.push(out("a"));
        feed.push(out("b"));
        let late = tokio::spawn(feed.clone().follow(1).map(|(i, _)| i).collect::<Vec<_>>());
        let all = tokio::spawn(feed.clone().follow(0).map(|(i, _)| i).collect::<Vec<_>>());
        tokio::task::yield_now().await;
        feed.push(out("c"));
        let e: Execution = serde_json::from_value(serde_json::json!({
            "id": "e1", "session_id": "s", "status": "completed", "language": "python", "code": "",
            "event": null, "timeout_sec": 1, "exit_code": 0, "error_message": null, "stdout": null,
            "stderr": null, "return_value": null, "artifacts": [], "metrics": null, "retry_count": 0,
            "created_at": "2026-01-01T00:00:00Z", "started_at": null, "completed_at": null,
            "execution_time": null, "context_id": null, "results": [], "results_truncated": false,
            "error": null
        }))
        .unwrap();
        feeds.close("e1", &e);
        assert_eq!(late.await.unwrap(), [1, 2, 3]);
        assert_eq!(all.await.unwrap(), [0, 1, 2, 3]);
        assert!(feeds.get("e1").is_some(), "kept a while for late re-attaches");
        assert_eq!(feed.follow(9).count().await, 0, "nothing past the end: it waits for nothing");
    }
}
