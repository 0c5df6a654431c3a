//! The revisioned event log and everything that reads it: watches (SSE) and
//! blocking queries, with the same semantics in every service.
//!
//! In Redis a log is a revision counter (`{prefix}:{name}:revision`) and a
//! capped stream (`{prefix}:{name}:events`) whose entry ids are
//! `<revision>-0`. Every state change runs in one Lua script that bumps the
//! counter and appends the event (see `lua/events.lua`, prepended to each
//! script by [`script`]), so revisions are gap-free and a reader that knows
//! revision N can ask Redis for exactly the events after N.
//!
//! In each process one [`EventFeed`] task tails the stream on a connection of
//! its own (`XREAD BLOCK`) and fans events out in memory: a blocking query
//! waits on a `watch` of the revision and an SSE watcher on a `broadcast`,
//! so a thousand watchers cost one Redis connection, not a thousand.
//! A watcher that falls behind or resumes from `Last-Event-ID` replays from
//! the stream itself; when the asked-for revision has been trimmed it gets a
//! `reset` event carrying the current revision and must re-list.
//!
//! # Epoch: noticing that Redis lost or replaced its data
//!
//! Each log also has an epoch (`{prefix}:{name}:epoch`), an id the first
//! write into an empty Redis creates (`SET NX` in the prelude) and that every
//! event carries. After a `FLUSHALL`, a failover to an empty replica or a
//! restore, the epoch is gone or different. The tail reads the epoch and the
//! revision in the same pipeline as each `XREAD` (no extra round trip), and
//! that read wakes at least every [`TAIL_BLOCK`] (1 s), so within about a
//! second of the loss it broadcasts `reset`: SSE watchers get a `reset`
//! event, blocking queries answer, and in-process followers (the gateway's
//! routing table, health-svc's catalog) reload. A revision that went down
//! counts as a loss too (a restore of an older snapshot keeps its epoch).
//! An epoch that appears where there was none is adopted without a reset:
//! it is the first write (or the first since an upgrade), not a loss.
//!
//! A Sentinel failover keeps the epoch (a replica copies it). A promoted
//! replica that missed the last writes has a lower revision (a reset); if
//! it has taken new writes since, reaching the old revision again, the tail
//! notices on reconnecting that the event at the revision it published last
//! is not the same one, and resets too. A replica that has every event
//! (`REDIS_MIN_REPLICAS_ACK`) is followed with no reset: watchers see each
//! event once.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::response::sse::{Event as SseEvent, KeepAlive, KeepAliveStream, Sse};
use redis::{
    Script, Value,
    streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply},
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::store::{Redis, StoreError};

/// The Lua prelude with `mcp_next_revision` and `mcp_append`.
pub const PRELUDE: &str = include_str!("../lua/events.lua");

/// How many events one read takes from the stream.
const PAGE: usize = 500;
/// How long the tail blocks in one `XREAD`: the bound on how late it notices
/// that the epoch changed (see the module docs), so at most 1 s.
const TAIL_BLOCK: Duration = Duration::from_secs(1);
/// SSE heartbeat comment interval (watchers and proxies see traffic at least this often).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Build a script that can call the prelude's functions.
pub fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// The kind of the event that tells a reader to re-list: sent to an SSE
/// watcher whose revision left the stream, and broadcast by the feed when
/// Redis lost or replaced its data (its epoch changed, or its revision went
/// down).
pub const RESET: &str = "reset";

/// One change, as stored in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The revision this change made.
    pub revision: u64,
    /// The event type (`registered`, `put`, …).
    pub kind: String,
    /// What it is about, for filtering (a service name, a namespace).
    pub scope: String,
    /// The JSON payload, passed to watchers as is.
    pub data: String,
}

impl Event {
    fn from_stream_id(entry: &StreamId) -> Option<Self> {
        let revision = entry.id.split('-').next()?.parse().ok()?;
        let field = |name: &str| -> Option<String> {
            match entry.map.get(name)? {
                Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        Some(Self {
            revision,
            kind: field("kind")?,
            scope: field("scope").unwrap_or_default(),
            data: field("data").unwrap_or_default(),
        })
    }

    /// The feed's `reset` notice: history restarts at `revision`.
    pub fn reset(revision: u64) -> Self {
        Self {
            revision,
            kind: RESET.to_owned(),
            scope: String::new(),
            data: format!(r#"{{"revision":{revision}}}"#),
        }
    }

    /// Whether this is the feed's `reset` notice.
    pub fn is_reset(&self) -> bool {
        self.kind == RESET
    }

    /// As an SSE event: `id:` revision, `event:` kind, `data:` payload.
    pub fn to_sse(&self) -> SseEvent {
        SseEvent::default()
            .id(self.revision.to_string())
            .event(&self.kind)
            .data(&self.data)
    }
}

/// What a reader resuming after a revision gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The events after the asked-for revision (empty when up to date).
    Events(Vec<Event>),
    /// The asked-for revision is no longer in the stream (or is in the
    /// future): re-list, then resume from this revision.
    Reset(u64),
}

/// Where a log stands: its revision and its epoch (`None` while Redis holds
/// no write of it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// The latest revision (0 before the first change).
    pub revision: u64,
    /// The epoch (see the module docs).
    pub epoch: Option<String>,
}

impl Head {
    /// Whether going from `self` (what a follower knew) to `now` means Redis
    /// lost or replaced the data: the epoch vanished or changed, or the
    /// revision went down.
    pub fn lost_to(&self, now: &Head) -> bool {
        let epoch_changed = match (&self.epoch, &now.epoch) {
            (Some(known), Some(current)) => known != current,
            (Some(_), None) => true,
            // No epoch known: the first write (or an upgrade) made one.
            (None, _) => false,
        };
        epoch_changed || now.revision < self.revision
    }
}

/// A revision counter plus a capped stream in Redis.
#[derive(Clone, Debug)]
pub struct EventLog {
    redis: Redis,
    revision_key: String,
    stream_key: String,
    epoch_key: String,
    max_len: u64,
}

impl EventLog {
    /// The log called `name` (`reg`, `cfg`), keeping about `max_len` events.
    pub fn new(redis: Redis, name: &str, max_len: u64) -> Self {
        let revision_key = redis.key(&[name, "revision"]);
        let stream_key = redis.key(&[name, "events"]);
        // The prelude derives the same key from the revision key.
        let epoch_key = redis.key(&[name, "epoch"]);
        Self {
            redis,
            revision_key,
            stream_key,
            epoch_key,
            max_len,
        }
    }

    /// The revision counter's key (pass as a script KEY).
    pub fn revision_key(&self) -> &str {
        &self.revision_key
    }

    /// The stream's key (pass as a script KEY).
    pub fn stream_key(&self) -> &str {
        &self.stream_key
    }

    /// The epoch's key (scripts derive it from the revision key).
    pub fn epoch_key(&self) -> &str {
        &self.epoch_key
    }

    /// The cap on the stream (pass as a script ARG).
    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    /// The Redis handle.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The latest revision (0 before the first change).
    pub async fn current_revision(&self) -> Result<u64, StoreError> {
        let mut conn = self.redis.conn();
        let key = &self.revision_key;
        let rev: Option<u64> = self
            .redis
            .run(async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        Ok(rev.unwrap_or(0))
    }

    /// The revision and the epoch, read together (one round trip).
    pub async fn head(&self) -> Result<Head, StoreError> {
        let mut conn = self.redis.conn();
        let mut pipe = redis::pipe();
        pipe.get(&self.revision_key).get(&self.epoch_key);
        let (revision, epoch): (Option<u64>, Option<String>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(Head {
            revision: revision.unwrap_or(0),
            epoch,
        })
    }

    /// Up to `count` events with a revision above `after`, oldest first.
    pub async fn read_after(&self, after: u64, count: usize) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.redis.conn();
        let start = format!("({after}-0");
        let key = &self.stream_key;
        let reply: StreamRangeReply = self
            .redis
            .run(async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(reply.ids.iter().filter_map(Event::from_stream_id).collect())
    }

    /// The events after `after` (one page), or a reset when they were trimmed.
    pub async fn replay(&self, after: u64) -> Result<Replay, StoreError> {
        let current = self.current_revision().await?;
        if after > current {
            return Ok(Replay::Reset(current));
        }
        if after == current {
            return Ok(Replay::Events(Vec::new()));
        }
        let events = self.read_after(after, PAGE).await?;
        match events.first() {
            Some(first) if first.revision == after + 1 => Ok(Replay::Events(events)),
            _ => Ok(Replay::Reset(current)),
        }
    }
}

/// What the feed publishes on its `watch`: the revision seen last and how
/// many resets it has broadcast (so a waiter wakes on a reset too).
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    revision: u64,
    resets: u64,
}

struct FeedInner {
    log: EventLog,
    events: broadcast::Sender<Arc<Event>>,
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
        let feed = Self {
            inner: Arc::new(FeedInner {
                log: log.clone(),
                events: events.clone(),
                position,
                watchers_gauge,
            }),
        };
        metrics::gauge!(watchers_gauge).set(0.0);
        let task = tokio::spawn(tail(log, events, position_tx, shutdown));
        (feed, task)
    }

    /// The log this feed tails.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
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

    /// Open an SSE watch: replay after `after` (`Last-Event-ID`), then live
    /// events, each passed through `filter`; `on_delivered` is told the
    /// revision reached after each delivery (for propagation tracking).
    ///
    /// Fails fast (→ 503) when Redis is down at open time; a watch that
    /// loses Redis later ends, and the client resumes with `Last-Event-ID`.
    pub async fn open_watch<F>(
        &self,
        after: Option<u64>,
        filter: F,
        on_delivered: Option<Box<dyn Fn(u64) + Send + Sync>>,
        shutdown: CancellationToken,
    ) -> Result<WatchResponse, StoreError>
    where
        F: Fn(&Event) -> bool + Send + Sync + 'static,
    {
        let live = self.subscribe();
        let log = self.log().clone();
        let start = match after {
            Some(after) => match log.replay(after).await? {
                Replay::Events(events) => Start::Replay(after, events),
                Replay::Reset(current) => Start::Reset(current),
            },
            None => Start::Live(log.current_revision().await?),
        };
        let (tx, rx) = mpsc::channel(64);
        let watcher = Watcher {
            log,
            live,
            tx,
            filter,
            on_delivered,
            gauge: self.inner.watchers_gauge,
        };
        tokio::spawn(watcher.run(start, shutdown));
        Ok(Sse::new(ReceiverStream::new(rx))
            .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
    }
}

/// An open SSE watch, ready to return from a handler.
pub type WatchResponse = Sse<KeepAliveStream<ReceiverStream<Result<SseEvent, Infallible>>>>;

enum Start {
    Replay(u64, Vec<Event>),
    Reset(u64),
    Live(u64),
}

struct Watcher<F> {
    log: EventLog,
    live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
    filter: F,
    on_delivered: Option<Box<dyn Fn(u64) + Send + Sync>>,
    gauge: &'static str,
}

/// Why a watcher stops.
enum Stop {
    Gone,
    Store,
}

impl<F: Fn(&Event) -> bool> Watcher<F> {
    async fn run(mut self, start: Start, shutdown: CancellationToken) {
        metrics::gauge!(self.gauge).increment(1.0);
        let _ = self.serve(start, shutdown).await;
        metrics::gauge!(self.gauge).decrement(1.0);
    }

    async fn serve(&mut self, start: Start, shutdown: CancellationToken) -> Result<(), Stop> {
        let mut last = match start {
            Start::Live(current) => current,
            Start::Reset(current) => {
                self.reset(current).await?;
                current
            }
            Start::Replay(after, events) => {
                let last = self.deliver(after, events).await?;
                self.catch_up(last).await?
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.tx.closed() => return Err(Stop::Gone),
                received = self.live.recv() => match received {
                    Ok(event) if event.is_reset() => {
                        self.reset(event.revision).await?;
                        last = event.revision;
                    }
                    Ok(event) if event.revision <= last => {}
                    Ok(event) if event.revision == last + 1 => {
                        last = self.deliver(last, [event.as_ref().clone()]).await?;
                    }
                    // A gap (the feed ran ahead of our replay) or we lagged: read Redis.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        last = self.catch_up(last).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    /// Replay from Redis until up to date; a trimmed gap becomes a reset.
    async fn catch_up(&mut self, mut last: u64) -> Result<u64, Stop> {
        loop {
            match self.log.replay(last).await.map_err(|_| Stop::Store)? {
                Replay::Events(events) if events.is_empty() => return Ok(last),
                Replay::Events(events) => last = self.deliver(last, events).await?,
                Replay::Reset(current) => {
                    self.reset(current).await?;
                    return Ok(current);
                }
            }
        }
    }

    async fn deliver(
        &mut self,
        mut last: u64,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<u64, Stop> {
        for event in events {
            if event.revision <= last {
                continue;
            }
            last = event.revision;
            if (self.filter)(&event) {
                self.tx
                    .send(Ok(event.to_sse()))
                    .await
                    .map_err(|_| Stop::Gone)?;
            }
        }
        if let Some(on_delivered) = &self.on_delivered {
            on_delivered(last);
        }
        Ok(last)
    }

    async fn reset(&mut self, current: u64) -> Result<(), Stop> {
        let event = Event::reset(current).to_sse();
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Gone)
    }
}

/// The tail task: follow the stream and publish to the feed until shutdown.
async fn tail(
    log: EventLog,
    events: broadcast::Sender<Arc<Event>>,
    position: watch::Sender<Position>,
    shutdown: CancellationToken,
) {
    // What this process knows: `None` until the first read.
    let mut known: Option<Head> = None;
    // The last event published, to check after a reconnect that the server
    // now answering (a promoted replica) has the same history, not only as
    // many revisions.
    let mut last: Option<Arc<Event>> = None;
    let options = StreamReadOptions::default()
        .count(PAGE)
        .block(TAIL_BLOCK.as_millis() as usize);
    while !shutdown.is_cancelled() {
        let mut conn = match log.redis().dedicated(TAIL_BLOCK).await {
            Ok(conn) => conn,
            Err(_) => {
                pause(&shutdown).await;
                continue;
            }
        };
        // (Re)start from the current revision; if Redis came back without
        // the data we followed, follow the new history (a reset).
        let head = match log.head().await {
            Ok(head) => head,
            Err(_) => {
                pause(&shutdown).await;
                continue;
            }
        };
        let diverged = match (&known, &last) {
            (Some(seen), Some(event)) if !seen.lost_to(&head) => {
                match log.read_after(event.revision.saturating_sub(1), 1).await {
                    Ok(found) => found.first() != Some(event.as_ref()),
                    Err(_) => {
                        pause(&shutdown).await;
                        continue;
                    }
                }
            }
            _ => false,
        };
        let mut head = match known.take() {
            Some(seen) if !seen.lost_to(&head) && !diverged => Head {
                revision: seen.revision,
                epoch: head.epoch.or(seen.epoch),
            },
            Some(seen) => {
                // Fewer revisions, another epoch, or (after a failover to a
                // replica that missed the last writes and took new ones
                // since) another event at the revision we last published.
                publish_reset(&log, &events, &position, &seen, &head);
                last = None;
                head
            }
            None => {
                position.send_modify(|p| p.revision = head.revision);
                head
            }
        };
        loop {
            let from = format!("{}-0", head.revision);
            // The epoch and the revision ride in the same pipeline as the
            // XREAD and are read right after it returns: every wake (at least
            // once per TAIL_BLOCK) checks for lost data at no extra round trip.
            let mut pipe = redis::pipe();
            pipe.cmd("XREAD")
                .arg(&options)
                .arg("STREAMS")
                .arg(log.stream_key())
                .arg(&from)
                .get(log.revision_key())
                .get(log.epoch_key());
            let read = pipe
                .query_async::<(Option<StreamReadReply>, Option<u64>, Option<String>)>(&mut conn);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = read => reply,
            };
            let (reply, revision, epoch) = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(%error, stream = log.stream_key(), "event tail lost redis; reconnecting");
                    break;
                }
            };
            let now = Head {
                revision: revision.unwrap_or(0),
                epoch,
            };
            if head.lost_to(&now) {
                // The events just read (if any) belong to the new history
                // or to the lost one: readers re-list instead.
                publish_reset(&log, &events, &position, &head, &now);
                last = None;
                head = now;
                continue;
            }
            if head.epoch.is_none() {
                head.epoch = now.epoch;
            }
            for entry in reply
                .iter()
                .flat_map(|r| r.keys.iter())
                .flat_map(|k| k.ids.iter())
            {
                if let Some(event) = Event::from_stream_id(entry) {
                    head.revision = event.revision;
                    position.send_modify(|p| p.revision = event.revision);
                    let event = Arc::new(event);
                    last = Some(event.clone());
                    // No receivers is fine: nobody is watching.
                    let _ = events.send(event);
                }
            }
        }
        known = Some(head);
        pause(&shutdown).await;
    }
}

/// Tell every reader that Redis lost or replaced the data (`seen` → `now`).
fn publish_reset(
    log: &EventLog,
    events: &broadcast::Sender<Arc<Event>>,
    position: &watch::Sender<Position>,
    seen: &Head,
    now: &Head,
) {
    tracing::warn!(
        seen_revision = seen.revision,
        revision = now.revision,
        seen_epoch = seen.epoch.as_deref().unwrap_or(""),
        epoch = now.epoch.as_deref().unwrap_or(""),
        stream = log.stream_key(),
        "redis lost or replaced its data (epoch or revision changed); readers reload"
    );
    position.send_modify(|p| {
        p.revision = now.revision;
        p.resets += 1;
    });
    let _ = events.send(Arc::new(Event::reset(now.revision)));
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
}
