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
//! waits on a `watch` of the revision, an in-process follower on a
//! `broadcast` of the events, and an SSE watcher on a `broadcast` of finished
//! SSE frames, one channel per scope (namespace, service) plus one for
//! watchers of everything. A thousand watchers cost one Redis connection and
//! one serialization per event, not a thousand; a watcher of one namespace
//! is not woken by another's changes, and its response body reads the
//! channel itself (no task per watcher, several ready frames in one write).
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
//!
//! # Parts
//!
//! [`EventLog`] (in `log`) reads the log in Redis, [`EventFeed`] (in
//! `feed`) fans it out in process, fed by the tail task (in `tail`); the
//! SSE channels are in `fanout`, the frame text in `sse`, each SSE watch is
//! a response body (in `watch`), and [`follow()`] (in `follow`) is the loop
//! every in-process [`Follower`] runs.

mod fanout;
mod feed;
mod follow;
mod log;
mod sse;
mod tail;
mod watch;

use std::time::Duration;

use redis::{Script, Value, streams::StreamId};

pub use feed::EventFeed;
pub use follow::{Follower, follow};
pub use log::EventLog;
pub use watch::WatchResponse;

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
