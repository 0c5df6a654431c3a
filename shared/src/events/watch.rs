//! One SSE watch, as a response body that reads its channel itself: it
//! replays what the client missed, then relays the fan-out's frames through
//! its filter, reading Redis again after a gap or a lag, and sending `reset`
//! when its history is gone.
//!
//! The body is polled by the connection's own task: no task per watcher, no
//! channel between a watcher and its connection, so an event wakes each
//! watching connection once. The frames are the fan-out's shared bytes; a
//! body that finds several ready sends them as one chunk (one write).

use std::{convert::Infallible, pin::Pin};

use axum::{
    body::Body,
    http::header,
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use tokio::{
    sync::broadcast::error::{RecvError, TryRecvError},
    time::{Instant, Sleep},
};

use super::{
    Event, EventLog, HEARTBEAT, Replay,
    fanout::{Delivery, Subscription},
    sse,
};

/// An open SSE watch, ready to return from a handler.
pub struct WatchResponse {
    body: Body,
}

impl WatchResponse {
    pub(super) fn new<F>(watch: Watch<F>) -> Self
    where
        F: Fn(&Event) -> bool + Send + 'static,
    {
        let chunks = futures_util::stream::unfold(watch, |mut watch| async move {
            let chunk = watch.next_chunk().await?;
            Some((Ok::<_, Infallible>(chunk), watch))
        });
        Self {
            body: Body::from_stream(chunks),
        }
    }
}

impl IntoResponse for WatchResponse {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            self.body,
        )
            .into_response()
    }
}

/// Where a watch starts.
pub(super) enum Start {
    /// Replay these events after this revision, then catch up from Redis.
    Replay(u64, Vec<Event>),
    /// The asked-for revision is gone: `reset` to this one.
    Reset(u64),
    /// Live from this revision.
    Live(u64),
}

/// Frames gathered into one chunk stop growing past this size.
const BATCH_BYTES: usize = 64 * 1024;

/// The callback told the revision a watch has reached.
pub(super) type OnDelivered = Box<dyn Fn(u64) + Send + Sync>;

/// Counts an open watch in its gauge while it lives.
struct Counted(&'static str);

impl Counted {
    fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// One watch's state, driven by its response body.
pub(super) struct Watch<F> {
    log: EventLog,
    live: Subscription,
    filter: F,
    on_delivered: Option<OnDelivered>,
    /// The revision this watch has reached (delivered or filtered out).
    last: u64,
    start: Option<Start>,
    /// Read Redis before the channel again (a gap, a lag, a replay's next page).
    catching_up: bool,
    /// The channel closed or Redis failed: end the stream.
    ended: bool,
    /// Fires at the earliest moment a heartbeat may be due; re-armed lazily
    /// (a frame only moves `quiet_since`, no timer work per event).
    heartbeat: Pin<Box<Sleep>>,
    quiet_since: Instant,
    _counted: Counted,
}

/// One chunk being gathered: a single frame stays the shared bytes, several
/// are copied into one buffer.
#[derive(Default)]
enum Batch {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Batch {
    fn push(&mut self, frame: &Bytes) {
        *self = match std::mem::take(self) {
            Batch::Empty => Batch::One(frame.clone()),
            Batch::One(first) => {
                let mut many = BytesMut::with_capacity(first.len() + frame.len());
                many.extend_from_slice(&first);
                many.extend_from_slice(frame);
                Batch::Many(many)
            }
            Batch::Many(mut many) => {
                many.extend_from_slice(frame);
                Batch::Many(many)
            }
        };
    }

    fn len(&self) -> usize {
        match self {
            Batch::Empty => 0,
            Batch::One(bytes) => bytes.len(),
            Batch::Many(bytes) => bytes.len(),
        }
    }

    fn finish(self) -> Option<Bytes> {
        match self {
            Batch::Empty => None,
            Batch::One(bytes) => Some(bytes),
            Batch::Many(bytes) => Some(bytes.freeze()),
        }
    }
}

impl<F: Fn(&Event) -> bool> Watch<F> {
    pub(super) fn new(
        log: EventLog,
        live: Subscription,
        start: Start,
        filter: F,
        on_delivered: Option<OnDelivered>,
        gauge: &'static str,
    ) -> Self {
        let now = Instant::now();
        Self {
            log,
            live,
            filter,
            on_delivered,
            last: 0,
            start: Some(start),
            catching_up: false,
            ended: false,
            heartbeat: Box::pin(tokio::time::sleep_until(now + HEARTBEAT)),
            quiet_since: now,
            _counted: Counted::new(gauge),
        }
    }

    /// The next chunk of the body; `None` ends it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let chunk = self.produce().await?;
        self.quiet_since = Instant::now();
        Some(chunk)
    }

    async fn produce(&mut self) -> Option<Bytes> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(start) = self.start.take() {
                match start {
                    Start::Live(current) => self.last = current,
                    Start::Reset(current) => return Some(self.reset_to(current)),
                    Start::Replay(after, events) => {
                        self.last = after;
                        self.catching_up = true;
                        if let Some(chunk) = self.replayed(events) {
                            return Some(chunk);
                        }
                    }
                }
                continue;
            }
            if self.catching_up {
                if let Some(chunk) = self.catch_up().await {
                    return Some(chunk);
                }
                continue;
            }
            let receiver = self.live.receiver()?;
            let received = tokio::select! {
                biased;
                // Closed when the feed stops: the watch ends (see `gather`).
                received = receiver.recv() => received,
                _ = self.heartbeat.as_mut() => {
                    let due = self.quiet_since + HEARTBEAT;
                    if Instant::now() >= due {
                        self.heartbeat.as_mut().reset(Instant::now() + HEARTBEAT);
                        return Some(Bytes::from_static(sse::HEARTBEAT_FRAME));
                    }
                    self.heartbeat.as_mut().reset(due);
                    continue;
                }
            };
            if let Some(chunk) = self.gather(received) {
                return Some(chunk);
            }
        }
    }

    /// Take `received` and whatever else is ready on the channel into one chunk.
    fn gather(&mut self, received: Result<Delivery, RecvError>) -> Option<Bytes> {
        let mut batch = Batch::default();
        let before = self.last;
        let mut next = Some(received);
        while let Some(received) = next.take() {
            match received {
                Ok(delivery) => self.take(&delivery, &mut batch),
                // Fell behind the channel: the missed events are in Redis.
                Err(RecvError::Lagged(_)) => self.catching_up = true,
                Err(RecvError::Closed) => self.ended = true,
            }
            if self.catching_up || self.ended || batch.len() >= BATCH_BYTES {
                break;
            }
            next = match self.live.receiver().map(|r| r.try_recv()) {
                Some(Ok(delivery)) => Some(Ok(delivery)),
                Some(Err(TryRecvError::Lagged(n))) => Some(Err(RecvError::Lagged(n))),
                Some(Err(TryRecvError::Closed)) | None => Some(Err(RecvError::Closed)),
                Some(Err(TryRecvError::Empty)) => None,
            };
        }
        if self.last > before {
            self.delivered();
        }
        batch.finish()
    }

    /// One delivery from the channel.
    fn take(&mut self, delivery: &Delivery, batch: &mut Batch) {
        let event = &delivery.frame.event;
        if event.is_reset() {
            batch.push(&delivery.frame.bytes);
            self.last = event.revision;
        } else if event.revision <= self.last {
            // Already sent (from the replay).
        } else if delivery.after > self.last {
            // The channel skipped events we have not seen (the feed ran
            // ahead of our replay): read them from Redis, this one included.
            self.catching_up = true;
        } else {
            self.last = event.revision;
            // The channel carries only the watched scope: the filter alone decides.
            if (self.filter)(event) {
                batch.push(&delivery.frame.bytes);
            }
        }
    }

    /// One page of Redis after `last`; `None` when there was nothing to send.
    async fn catch_up(&mut self) -> Option<Bytes> {
        match self.log.replay(self.last).await {
            Err(_) => {
                // Redis went away: end the stream; the client resumes with `Last-Event-ID`.
                self.ended = true;
                None
            }
            Ok(Replay::Events(events)) if events.is_empty() => {
                self.catching_up = false;
                None
            }
            Ok(Replay::Events(events)) => self.replayed(events),
            Ok(Replay::Reset(current)) => {
                self.catching_up = false;
                Some(self.reset_to(current))
            }
        }
    }

    /// Events read from Redis, each one's frame encoded for this watch.
    fn replayed(&mut self, events: Vec<Event>) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let before = self.last;
        for event in events {
            if event.revision <= self.last {
                continue;
            }
            self.last = event.revision;
            if self.admits(&event) {
                sse::write_frame(&mut out, &event);
            }
        }
        if self.last > before {
            self.delivered();
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Whether the client gets `event` read from Redis: its scope is the
    /// watched one (a replay reads every scope) and the filter passes it.
    fn admits(&self, event: &Event) -> bool {
        self.live.scope().is_none_or(|s| event.scope == s) && (self.filter)(event)
    }

    fn reset_to(&mut self, current: u64) -> Bytes {
        self.last = current;
        sse::frame(&Event::reset(current))
    }

    fn delivered(&self) {
        if let Some(on_delivered) = &self.on_delivered {
            on_delivered(self.last);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{events::fanout::Fanout, store::Redis};

    /// KEYS: revision, stream. ARGV: max length, scope, count. Returns the last revision.
    const APPEND: &str = "local rev
for _ = 1, tonumber(ARGV[3]) do
  rev = mcp_next_revision(KEYS[1])
  mcp_append(KEYS[2], ARGV[1], rev, 'put', ARGV[2], '{}')
end
return rev";

    fn log() -> EventLog {
        let redis = Redis::new(
            &mcp_testkit::redis().url(),
            &mcp_testkit::prefix(),
            Duration::from_secs(2),
        )
        .unwrap();
        EventLog::new(redis, "t", 100_000)
    }

    /// Append `count` events of `scope` to Redis (one round trip); returns
    /// them as the tail would read them.
    async fn append(log: &EventLog, scope: &str, count: u64) -> Vec<Arc<Event>> {
        let mut conn = log.redis().conn();
        let last: u64 = crate::events::script(APPEND)
            .key(log.revision_key())
            .key(log.stream_key())
            .arg(log.max_len())
            .arg(scope)
            .arg(count)
            .invoke_async(&mut conn)
            .await
            .unwrap();
        (last + 1 - count..=last)
            .map(|revision| {
                Arc::new(Event {
                    revision,
                    kind: "put".to_owned(),
                    scope: scope.to_owned(),
                    data: "{}".to_owned(),
                })
            })
            .collect()
    }

    /// Append one event and publish it as the tail would; returns its revision.
    async fn append_one(log: &EventLog, fanout: &Fanout, scope: &str) -> u64 {
        let event = append(log, scope, 1).await.remove(0);
        fanout.publish(&event);
        event.revision
    }

    fn watch(log: &EventLog, live: Subscription, start: Start) -> Watch<impl Fn(&Event) -> bool> {
        Watch::new(
            log.clone(),
            live,
            start,
            |_: &Event| true,
            None,
            "test_watchers",
        )
    }

    /// The ids of the events in the chunks the watch produces, until `count`.
    async fn ids<F: Fn(&Event) -> bool>(watch: &mut Watch<F>, count: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < count {
            let chunk = tokio::time::timeout(Duration::from_secs(10), watch.next_chunk())
                .await
                .expect("a chunk within 10 s")
                .expect("the watch goes on");
            let text = String::from_utf8(chunk.to_vec()).unwrap();
            ids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("id: "))
                    .map(|id| id.parse::<u64>().unwrap()),
            );
        }
        ids
    }

    #[tokio::test]
    async fn a_watch_that_lags_behind_its_channel_reads_the_rest_from_redis() {
        let log = log();
        let fanout = Arc::new(Fanout::new());
        let mut watch = watch(&log, fanout.subscribe(None), Start::Live(0));
        // More than the channel holds, none read yet: the watch lags.
        let events = append(&log, "x", 5000).await;
        for event in &events {
            fanout.publish(event);
        }
        let published: Vec<u64> = events.iter().map(|e| e.revision).collect();
        assert_eq!(ids(&mut watch, 5000).await, published);
        // Then live again.
        let next = append_one(&log, &fanout, "x").await;
        assert_eq!(ids(&mut watch, 1).await, [next]);
    }

    #[tokio::test]
    async fn a_scope_channel_that_skipped_events_sends_the_watch_to_redis() {
        let log = log();
        let fanout = Arc::new(Fanout::new());
        let mut scope_a = Vec::new();
        for scope in ["a", "b", "a", "b"] {
            // Published before anyone watches `a`: the channel starts after them.
            let revision = append_one(&log, &fanout, scope).await;
            if scope == "a" {
                scope_a.push(revision);
            }
        }
        let live = fanout.subscribe(Some("a".to_owned()));
        // The watch believes it is at 0 (a Redis behind the feed, say): the
        // first delivery says the channel began after events it never saw.
        let mut watch = watch(&log, live, Start::Live(0));
        scope_a.push(append_one(&log, &fanout, "a").await);
        assert_eq!(ids(&mut watch, 3).await, scope_a);
    }

    #[tokio::test]
    async fn ready_frames_leave_as_one_chunk() {
        let log = log();
        let fanout = Arc::new(Fanout::new());
        let mut watch = watch(&log, fanout.subscribe(None), Start::Live(0));
        let mut published = Vec::new();
        for _ in 0..3 {
            published.push(append_one(&log, &fanout, "x").await);
        }
        let chunk = watch.next_chunk().await.unwrap();
        let text = String::from_utf8(chunk.to_vec()).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect();
        assert_eq!(ids, published, "{text}");
    }
}
