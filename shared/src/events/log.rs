//! The log in Redis: its keys, its head (revision and epoch, read
//! together), and the events after a revision, or a reset when they were
//! trimmed.

use redis::streams::StreamRangeReply;

use super::{Event, Head, PAGE, Replay};
use crate::store::{Redis, StoreError};

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
