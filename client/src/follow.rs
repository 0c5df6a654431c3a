//! The loop both watchers run: keep a local copy current from an SSE watch.
//!
//! The protocol (ARCHITECTURE.md, "Event streams"): events carry
//! `id:` = revision; a reconnect sends `Last-Event-ID` and loses nothing;
//! a `reset` event (the asked-for revision was trimmed, or Redis lost its
//! data) means "re-list, then carry on from here". The first connection
//! opens the stream *before* listing, so a change between the two is either
//! in the list or on the stream, never in neither.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{Error, backoff::Backoff, sse::EventStream, sse::SseEvent};

/// What a watcher keeps current.
pub(crate) trait Followed: Send {
    /// A name for logs.
    fn describe(&self) -> String;
    /// Open the watch after `after` (live when `None`).
    fn open(&self, after: Option<u64>) -> impl Future<Output = Result<EventStream, Error>> + Send;
    /// Fetch the whole state again; the revision to resume from, if known.
    fn relist(&mut self) -> impl Future<Output = Result<Option<u64>, Error>> + Send;
    /// Apply one event with revision `revision`.
    fn apply(&mut self, event: &SseEvent, revision: u64);
}

/// First retry delay after a broken watch.
const BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const CAP: Duration = Duration::from_secs(5);

/// The background task of a watcher: [`follow`] until stopped or dropped.
#[derive(Debug)]
pub(crate) struct Following {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Following {
    /// Start following. Must be called inside a Tokio runtime.
    pub(crate) fn spawn<F: Followed + 'static>(followed: F) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(followed, stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stop and wait for the task to end.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Wait until the followed state is `synced`, at most `within`; true once it is.
pub(crate) async fn synced<T>(
    state: &watch::Receiver<T>,
    within: Duration,
    synced: impl FnMut(&T) -> bool,
) -> bool {
    let mut rx = state.clone();
    tokio::time::timeout(within, rx.wait_for(synced))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Run until `stop` fires.
async fn follow<F: Followed>(mut followed: F, stop: CancellationToken) {
    let mut backoff = Backoff::new(BASE, CAP);
    let mut resume: Option<u64> = None;
    while !stop.is_cancelled() {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = followed.open(resume) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(watch = %followed.describe(), error = %e, "watch failed to open; retrying");
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        if resume.is_none() {
            let listed = tokio::select! {
                _ = stop.cancelled() => return,
                listed = followed.relist() => listed,
            };
            match listed {
                Ok(revision) => resume = revision,
                Err(e) => {
                    tracing::debug!(watch = %followed.describe(), error = %e, "listing failed; retrying");
                    pause(&stop, backoff.next_delay()).await;
                    continue;
                }
            }
        }
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = stream.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::debug!(watch = %followed.describe(), error = %e, "watch broke; resuming");
                    break;
                }
                None => break,
            };
            backoff.reset();
            if event.event == "reset" {
                match followed.relist().await {
                    Ok(revision) => resume = revision.or(event.revision()),
                    Err(_) => {
                        // Re-list on the next connection instead.
                        resume = None;
                        break;
                    }
                }
                continue;
            }
            if let Some(revision) = event.revision() {
                followed.apply(&event, revision);
                resume = Some(revision);
            }
        }
        pause(&stop, backoff.next_delay()).await;
    }
}

async fn pause(stop: &CancellationToken, duration: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}
