//! The in-process fan-out of one log: the revision on a `watch` for
//! blocking queries, the events on a `broadcast` for in-process followers,
//! and their SSE frames on the [`Fanout`]'s channels for SSE watchers.

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    Event, EventLog, Replay,
    fanout::Fanout,
    tail::tail,
    watch::{OnDelivered, Start, Watch, WatchResponse},
};
use crate::store::StoreError;

/// What the feed publishes on its `watch`: the revision seen last, how
/// many resets it has broadcast (so a waiter wakes on a reset too), and
/// whether the tail has read its starting revision yet.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Position {
    pub(super) revision: u64,
    pub(super) resets: u64,
    pub(super) tailing: bool,
}

/// How long a watch opened before the tail's first read waits for it.
const TAIL_START_WAIT: Duration = Duration::from_millis(500);

struct FeedInner {
    log: EventLog,
    events: broadcast::Sender<Arc<Event>>,
    fanout: Arc<Fanout>,
    position: watch::Receiver<Position>,
    watchers_gauge: &'static str,
}

/// The in-process fan-out of one event log (see the module docs).
#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<FeedInner>,
}

impl EventFeed {
    /// Start tailing `log` until `shutdown`. `watchers_gauge` names the
    /// Prometheus gauge of open SSE watchers (`registry_watchers`, …).
    pub fn spawn(
        log: EventLog,
        watchers_gauge: &'static str,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (events, _) = broadcast::channel(4096);
        let (position_tx, position) = watch::channel(Position::default());
        let fanout = Arc::new(Fanout::new());
        let feed = Self {
            inner: Arc::new(FeedInner {
                log: log.clone(),
                events: events.clone(),
                fanout: fanout.clone(),
                position,
                watchers_gauge,
            }),
        };
        metrics::gauge!(watchers_gauge).set(0.0);
        let task = tokio::spawn(async move {
            tail(log, events, fanout.clone(), position_tx, shutdown).await;
            // The feed stopped (shutdown): every SSE watch ends.
            fanout.close();
        });
        (feed, task)
    }

    /// The log this feed tails.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Wait until the tail has read the revision it starts from (at once
    /// once it has; never while Redis stays down from start-up).
    ///
    /// "Subscribe, then read Redis" loses nothing only from then on: a
    /// write that lands before the tail's first read is behind the tail's
    /// starting point, and its event never comes to a subscriber that read
    /// Redis before it (at start-up, a follower would wait for its next
    /// check to notice, and a fenced read with it).
    pub async fn tailing(&self) {
        let mut rx = self.inner.position.clone();
        // The sender lives as long as the tail task: gone means shutdown.
        let _ = rx.wait_for(|p| p.tailing).await;
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// The latest revision this process has seen.
    pub fn revision(&self) -> u64 {
        self.inner.position.borrow().revision
    }

    /// How many times this feed has broadcast a `reset` because Redis lost
    /// or replaced its data (a follower that saw a different count reloads).
    pub fn resets(&self) -> u64 {
        self.inner.position.borrow().resets
    }

    /// Wait until the revision passes `index`, at most `wait` (or until
    /// shutdown, or until the feed resets: the index belongs to a history
    /// Redis no longer has). Returns the revision seen last. The
    /// blocking-query primitive.
    pub async fn wait_past(&self, index: u64, wait: Duration, shutdown: &CancellationToken) -> u64 {
        let mut rx = self.inner.position.clone();
        let resets = rx.borrow().resets;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::timeout(
                wait,
                rx.wait_for(|p| p.revision > index || p.resets != resets),
            ) => {}
        }
        rx.borrow().revision
    }

    /// Wait until an event after `index` matching `filter` arrives, at most
    /// `wait`. Events already in the stream after `index` count too, so no
    /// change between the caller's read and this call is missed.
    pub async fn wait_for_event<F>(
        &self,
        index: u64,
        wait: Duration,
        shutdown: &CancellationToken,
        filter: F,
    ) -> Result<(), StoreError>
    where
        F: Fn(&Event) -> bool,
    {
        // Subscribe before reading the backlog so nothing falls between the two.
        let mut live = self.subscribe();
        let mut last = index;
        loop {
            match self.log().replay(last).await? {
                Replay::Reset(_) => return Ok(()),
                Replay::Events(events) if events.is_empty() => break,
                Replay::Events(events) => {
                    if events.iter().any(&filter) {
                        return Ok(());
                    }
                    last = events.last().map_or(last, |e| e.revision);
                }
            }
        }
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = &mut deadline => return Ok(()),
                received = live.recv() => match received {
                    Ok(event) if event.is_reset() => return Ok(()),
                    Ok(event) if event.revision > last && filter(&event) => return Ok(()),
                    Ok(_) => {}
                    // Fell behind or the feed stopped: answer now, the client re-asks.
                    Err(_) => return Ok(()),
                },
            }
        }
    }

    /// Open an SSE watch of `scope` (`None`: every scope): replay after
    /// `after` (`Last-Event-ID`), then live events, each passed through
    /// `filter` (which sees only events of `scope`); `on_delivered` is told the revision reached after each
    /// delivery (for propagation tracking). A watch of one scope listens on
    /// that scope's channel only, so other scopes' changes never wake it.
    ///
    /// Fails fast (→ 503) when Redis is down at open time; a watch that
    /// loses Redis later ends, and the client resumes with `Last-Event-ID`.
    /// Every watch ends when the feed stops (its `shutdown` fired).
    pub async fn open_watch<F>(
        &self,
        after: Option<u64>,
        scope: Option<String>,
        filter: F,
        on_delivered: Option<OnDelivered>,
    ) -> Result<WatchResponse, StoreError>
    where
        F: Fn(&Event) -> bool + Send + 'static,
    {
        // Only a running tail delivers what comes after the read below
        // (see `tailing`); at start-up give it a moment, then let Redis's
        // answer decide (down: the 503 the caller expects).
        if !self.inner.position.borrow().tailing {
            let _ = tokio::time::timeout(TAIL_START_WAIT, self.tailing()).await;
        }
        // Subscribe before reading Redis so nothing falls between the two.
        let live = self.inner.fanout.subscribe(scope);
        let log = self.log().clone();
        let start = match after {
            Some(after) => match log.replay(after).await? {
                Replay::Events(events) => Start::Replay(after, events),
                Replay::Reset(current) => Start::Reset(current),
            },
            None => Start::Live(log.current_revision().await?),
        };
        let watch = Watch::new(
            log,
            live,
            start,
            filter,
            on_delivered,
            self.inner.watchers_gauge,
        );
        Ok(WatchResponse::new(watch))
    }
}
