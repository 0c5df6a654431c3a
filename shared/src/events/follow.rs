//! The follower loop: keeps an in-memory copy of what a log describes (the
//! gateway's routing table and policies, health-svc's catalog) in step with
//! the log, through the process's [`EventFeed`]. Each of them implements
//! [`Follower`] (how to load, install and apply); [`follow`] is the one loop.
//! A follower may batch: the loop tells it when no event is waiting
//! ([`Follower::settled`]), so a burst of writes costs one publication.
//!
//! The rule the loop keeps:
//!
//! 1. Wait for the feed's tail to start, subscribe to the feed, then load
//!    the state and the revision R it is at, read together. Subscribing
//!    first means no event written after the load can fall between the two
//!    (once the tail runs: a write before its first read is behind it).
//! 2. Apply only the events after R, one revision after the other: an event
//!    at or below the last applied revision is already in the state.
//! 3. Reload when the chain breaks: an event past the next revision (a gap),
//!    a subscription that lagged, or a revision the feed has seen whose
//!    event never came (the feed started tailing after the load). Reload
//!    too when Redis lost or replaced its data: a `reset` from the feed, or
//!    a revision in Redis below ours; the follower is told to
//!    [`Follower::forget`] first, since what it knows belongs to another
//!    history whose revisions mean nothing in the new one.
//! 4. While a load fails (Redis is down), keep the last state and retry,
//!    backing off from 250 ms to at most 1 s; warn once per outage.
//! 5. Stop on the shutdown token.

use std::{future::Future, time::Duration};

use tokio::{
    sync::broadcast::{Receiver, error::RecvError},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{Event, EventFeed};
use crate::store::StoreError;

/// How often the loop compares its revision with the feed's and Redis's.
const CHECK: Duration = Duration::from_millis(250);
/// The first wait after a failed load; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two loads while Redis is down: the bound on how
/// late a follower notices that Redis came back.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// An in-memory copy of what one log describes, kept by [`follow`].
///
/// Only the loop calls these, one at a time: `install` after each load,
/// `apply` for each event after it, `forget` before a reload after lost data.
pub trait Follower {
    /// What it is, for the logs ("routing table", "gateway policies").
    const NAME: &'static str;
    /// The state a load returns.
    type Snapshot;

    /// Read the whole state and the revision it is at, consistently (one
    /// script or `MULTI`): the loop applies exactly the events after it.
    fn load(&self) -> impl Future<Output = Result<(u64, Self::Snapshot), StoreError>> + Send;

    /// Replace the state with a fresh load at `revision`: what is not in it
    /// is gone. Whatever is unchanged may keep its live state (breakers,
    /// check tasks, counters).
    fn install(&mut self, revision: u64, snapshot: Self::Snapshot);

    /// Apply the event at the next revision.
    fn apply(&mut self, event: &Event);

    /// Redis lost or replaced its data, and a load follows: drop what would
    /// let the old history's revisions shadow the new one's. The published
    /// state keeps serving until that load. Nothing by default.
    fn forget(&mut self) {}

    /// Every event received so far is applied (none is waiting): a follower
    /// that batches a burst of events into one publication publishes now.
    /// Nothing by default (a follower that publishes in `apply`).
    fn settled(&mut self) {}
}

/// Why [`track`] stopped applying events.
enum Break {
    /// Events were missed: the state is behind, not wrong.
    Missed,
    /// Redis lost or replaced its data: the state is from another history.
    Lost,
    /// Shutdown (or the feed is gone).
    Stop,
}

/// Keep `follower` in step with `feed`'s log until `shutdown` (see the
/// module docs).
pub async fn follow<F: Follower>(feed: EventFeed, mut follower: F, shutdown: CancellationToken) {
    let mut retry = RETRY_FIRST;
    let mut failing = false;
    // Subscribing before loading works once the tail runs (see
    // `EventFeed::tailing`); until Redis answers there is nothing to load.
    let tailing = feed.tailing();
    tokio::pin!(tailing);
    tokio::select! {
        _ = shutdown.cancelled() => return,
        () = &mut tailing => {}
        _ = tokio::time::sleep(RETRY_MAX) => {
            tracing::warn!(follower = F::NAME, "cannot load before the event tail starts (Redis unreachable?); waiting");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = tailing => {}
            }
            tracing::info!(follower = F::NAME, "the event tail started; loading");
        }
    }
    while !shutdown.is_cancelled() {
        // Subscribe before loading: see the module docs.
        let mut events = feed.subscribe();
        let loaded = tokio::select! {
            _ = shutdown.cancelled() => return,
            loaded = follower.load() => loaded,
        };
        let (revision, snapshot) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, follower = F::NAME, "cannot load; keeping the last state");
                    failing = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        if failing {
            tracing::info!(follower = F::NAME, revision, "loaded again");
        }
        failing = false;
        retry = RETRY_FIRST;
        follower.install(revision, snapshot);
        match track(&feed, &mut events, &mut follower, revision, &shutdown).await {
            Break::Missed => {}
            Break::Lost => follower.forget(),
            Break::Stop => return,
        }
    }
}

/// Apply the events after `last` until the chain breaks, and say how.
async fn track<F: Follower>(
    feed: &EventFeed,
    events: &mut Receiver<std::sync::Arc<Event>>,
    follower: &mut F,
    mut last: u64,
    shutdown: &CancellationToken,
) -> Break {
    let name = F::NAME;
    let mut check = tokio::time::interval_at(Instant::now() + CHECK, CHECK);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A revision the feed had reached at the previous check without its
    // event having come to us. The feed moves its revision just before it
    // sends the event, so one check can catch it in between; the event not
    // arriving by the next check means it never will.
    let mut awaited: Option<u64> = None;
    loop {
        // Biased: the check only runs when no event is waiting.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Break::Stop,
            received = events.recv() => match received {
                Ok(event) if event.is_reset() => {
                    tracing::debug!(follower = name, last, "redis lost its data; reloading");
                    return Break::Lost;
                }
                Ok(event) if event.revision <= last => {
                    if events.is_empty() {
                        follower.settled();
                    }
                }
                Ok(event) if event.revision == last + 1 => {
                    follower.apply(&event);
                    last = event.revision;
                    if events.is_empty() {
                        follower.settled();
                    }
                }
                Ok(event) => {
                    tracing::debug!(follower = name, last, revision = event.revision, "gap in the events; reloading");
                    return Break::Missed;
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(follower = name, last, skipped, "fell behind the feed; reloading");
                    return Break::Missed;
                }
                Err(RecvError::Closed) => return Break::Stop,
            },
            _ = check.tick() => {
                if awaited.is_some_and(|revision| revision > last) {
                    tracing::debug!(follower = name, last, feed = feed.revision(), "events the feed saw never came; reloading");
                    return Break::Missed;
                }
                let seen = feed.revision();
                awaited = (seen > last).then_some(seen);
                // The feed behind us: it has not read Redis yet, or Redis
                // lost data before it could notice (no `reset` then). Ask Redis.
                if seen < last
                    && feed
                        .log()
                        .current_revision()
                        .await
                        .is_ok_and(|now| now < last)
                {
                    tracing::debug!(follower = name, last, "redis's revision went below ours; reloading");
                    return Break::Lost;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::{
        collections::BTreeSet,
        sync::{Arc, Mutex},
    };

    use mcp_testkit::eventually;

    use super::*;
    use crate::{
        Redis,
        events::{EventLog, script},
    };

    /// Add item ARGV[2] to the set KEYS[3] and append its event (scope: the item).
    const ADD: &str = "local rev = mcp_next_revision(KEYS[1])
redis.call('SADD', KEYS[3], ARGV[2])
mcp_append(KEYS[2], ARGV[1], rev, 'added', ARGV[2], '{}')
return rev";

    /// What the test follower did, for the test to read.
    #[derive(Debug, Default)]
    struct Seen {
        /// The revision of each install.
        loads: Vec<u64>,
        /// The revision of each applied event.
        applied: Vec<u64>,
        /// How many times it was told to forget.
        forgotten: usize,
        /// The state: the set's items.
        items: BTreeSet<String>,
    }

    /// A follower of a set of items in Redis.
    struct Items {
        log: EventLog,
        set: String,
        seen: Arc<Mutex<Seen>>,
        /// An item to add while the first load runs, between the
        /// subscription and the read (so its event reaches the subscription
        /// and the state both).
        racer: Mutex<Option<String>>,
    }

    impl Follower for Items {
        const NAME: &'static str = "test items";
        type Snapshot = BTreeSet<String>;

        async fn load(&self) -> Result<(u64, BTreeSet<String>), StoreError> {
            let racer = self.racer.lock().unwrap().take();
            if let Some(item) = racer {
                add(&self.log, &self.set, &item).await;
            }
            let redis = self.log.redis();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .get(self.log.revision_key())
                .smembers(&self.set);
            let mut conn = redis.conn();
            let (revision, items): (Option<u64>, BTreeSet<String>) =
                redis.run(pipe.query_async(&mut conn)).await?;
            Ok((revision.unwrap_or(0), items))
        }

        fn install(&mut self, revision: u64, items: BTreeSet<String>) {
            let mut seen = self.seen.lock().unwrap();
            seen.loads.push(revision);
            seen.items = items;
        }

        fn apply(&mut self, event: &Event) {
            let mut seen = self.seen.lock().unwrap();
            seen.applied.push(event.revision);
            seen.items.insert(event.scope.clone());
        }

        fn forget(&mut self) {
            self.seen.lock().unwrap().forgotten += 1;
        }
    }

    async fn add(log: &EventLog, set: &str, item: &str) -> u64 {
        let mut conn = log.redis().conn();
        script(ADD)
            .key(log.revision_key())
            .key(log.stream_key())
            .key(set)
            .arg(100)
            .arg(item)
            .invoke_async(&mut conn)
            .await
            .unwrap()
    }

    /// One raw command on the test's Redis (the tests break things behind the log's back).
    async fn command(redis: &Redis, args: &[&str]) {
        let mut conn = redis.conn();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
    }

    /// A log with `items` already in it, and a follower of it running.
    struct Fixture {
        log: EventLog,
        set: String,
        seen: Arc<Mutex<Seen>>,
        shutdown: CancellationToken,
    }

    impl Fixture {
        /// `items` must not be empty (the feed's first revision shows it is tailing).
        async fn start(items: &[&str], racer: Option<&str>) -> Self {
            let redis = Redis::new(
                &mcp_testkit::redis().url(),
                &mcp_testkit::prefix(),
                Duration::from_millis(750),
            )
            .unwrap();
            let log = EventLog::new(redis.clone(), "t", 100);
            let set = redis.key(&["t", "items"]);
            for item in items {
                add(&log, &set, item).await;
            }
            let seen = Arc::new(Mutex::new(Seen::default()));
            let shutdown = CancellationToken::new();
            let (feed, _tail) = EventFeed::spawn(log.clone(), "test_watchers", shutdown.clone());
            // The feed tails from the revision it reads first: wait for it,
            // so every later write reaches the follower's subscription.
            let preloaded = items.len() as u64;
            assert!(
                eventually(Duration::from_secs(5), || async {
                    feed.revision() >= preloaded
                })
                .await
            );
            let follower = Items {
                log: log.clone(),
                set: set.clone(),
                seen: seen.clone(),
                racer: Mutex::new(racer.map(str::to_owned)),
            };
            tokio::spawn(follow(feed, follower, shutdown.clone()));
            let fixture = Self {
                log,
                set,
                seen,
                shutdown,
            };
            assert!(
                fixture.until(|seen| !seen.loads.is_empty()).await,
                "never loaded"
            );
            fixture
        }

        async fn add(&self, item: &str) -> u64 {
            add(&self.log, &self.set, item).await
        }

        /// Wait (at most 5 s) until `check` holds of what the follower did.
        async fn until(&self, check: impl Fn(&Seen) -> bool) -> bool {
            eventually(Duration::from_secs(5), || async {
                check(&self.seen.lock().unwrap())
            })
            .await
        }

        fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
            read(&self.seen.lock().unwrap())
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    fn items(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|i| (*i).to_owned()).collect()
    }

    /// Longer than two checks: time for a spurious reload to show.
    const SETTLE: Duration = Duration::from_millis(700);

    #[tokio::test]
    async fn events_after_the_load_are_applied_once_in_order() {
        // "racer" is written between the subscription and the load's read:
        // its event reaches the subscription, and the load has it already.
        let f = Fixture::start(&["a", "b"], Some("racer")).await;
        assert_eq!(f.seen(|s| s.loads.clone()), [3]);
        let mut written = Vec::new();
        for item in ["c", "d", "e"] {
            written.push(f.add(item).await);
        }
        assert_eq!(written, [4, 5, 6]);
        assert!(
            f.until(|s| s.applied.len() >= 3).await,
            "{:?}",
            f.seen(|s| s.applied.clone())
        );
        tokio::time::sleep(SETTLE).await;
        f.seen(|s| {
            assert_eq!(
                s.applied,
                [4, 5, 6],
                "the racer's event (3) is in the load, not applied again"
            );
            assert_eq!(s.loads, [3], "no reload");
            assert_eq!(s.items, items(&["a", "b", "racer", "c", "d", "e"]));
            assert_eq!(s.forgotten, 0);
        });
    }

    #[tokio::test]
    async fn a_gap_in_the_revisions_reloads() {
        let f = Fixture::start(&["a", "b"], None).await;
        // Revision 3 is taken with no event: the next event (4) leaves a gap.
        command(f.log.redis(), &["INCR", f.log.revision_key()]).await;
        assert_eq!(f.add("c").await, 4);
        assert!(
            f.until(|s| s.loads.len() == 2).await,
            "{:?}",
            f.seen(|s| s.loads.clone())
        );
        assert_eq!(f.add("d").await, 5);
        assert!(
            f.until(|s| s.applied == [5]).await,
            "{:?}",
            f.seen(|s| s.applied.clone())
        );
        f.seen(|s| {
            assert_eq!(
                s.loads,
                [2, 4],
                "reloaded at the revision of the gap, not applied past it"
            );
            assert_eq!(s.items, items(&["a", "b", "c", "d"]));
            assert_eq!(s.forgotten, 0, "a gap is missed events, not lost data");
        });
    }

    #[tokio::test]
    async fn a_reset_forgets_and_reloads() {
        let f = Fixture::start(&["a"], None).await;
        // Another epoch: to the feed, Redis replaced its data (a `reset`).
        command(f.log.redis(), &["SET", f.log.epoch_key(), "another"]).await;
        assert!(
            f.until(|s| s.loads.len() == 2).await,
            "{:?}",
            f.seen(|s| s.loads.clone())
        );
        assert_eq!(f.add("b").await, 2);
        assert!(
            f.until(|s| s.applied == [2]).await,
            "{:?}",
            f.seen(|s| s.applied.clone())
        );
        tokio::time::sleep(SETTLE).await;
        f.seen(|s| {
            assert_eq!(s.loads, [1, 1]);
            assert_eq!(s.forgotten, 1, "told to forget before the reload");
            assert_eq!(s.items, items(&["a", "b"]));
        });
    }

    #[tokio::test]
    async fn the_state_survives_a_failing_load_and_the_loop_retries() {
        let f = Fixture::start(&["a"], None).await;
        let redis = f.log.redis();
        // The set becomes a string: every load fails (WRONGTYPE) until fixed.
        command(redis, &["SET", &f.set, "not a set"]).await;
        command(redis, &["SET", f.log.epoch_key(), "another"]).await;
        assert!(f.until(|s| s.forgotten == 1).await, "no reset came");
        tokio::time::sleep(SETTLE).await;
        f.seen(|s| {
            assert_eq!(s.loads, [1], "nothing installed from a failed load");
            assert_eq!(s.items, items(&["a"]), "the last state stays");
        });
        command(redis, &["DEL", &f.set]).await;
        command(redis, &["SADD", &f.set, "a", "b"]).await;
        assert!(
            f.until(|s| s.loads.len() == 2).await,
            "never loaded again: {:?}",
            f.seen(|s| s.loads.clone())
        );
        f.seen(|s| assert_eq!(s.items, items(&["a", "b"])));
    }

    #[tokio::test]
    async fn a_follower_started_while_redis_is_down_loads_once_the_tail_runs_and_misses_nothing() {
        let own = mcp_testkit::RedisServer::start();
        let redis = Redis::new(
            &own.url(),
            &mcp_testkit::prefix(),
            Duration::from_millis(750),
        )
        .unwrap();
        let log = EventLog::new(redis.clone(), "t", 100);
        let set = redis.key(&["t", "items"]);
        own.stop();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let (feed, _tail) = EventFeed::spawn(log.clone(), "test_watchers", shutdown.clone());
        let follower = Items {
            log: log.clone(),
            set: set.clone(),
            seen: seen.clone(),
            racer: Mutex::new(None),
        };
        tokio::spawn(follow(feed.clone(), follower, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            seen.lock().unwrap().loads.is_empty(),
            "loaded from a Redis that is down"
        );

        // Writes as soon as Redis is back, whoever of the tail and the
        // follower gets there first: none may fall between the two.
        own.restart();
        let mut written = Vec::new();
        for item in ["a", "b", "c"] {
            written.push(add(&log, &set, item).await);
        }
        assert_eq!(written, [1, 2, 3]);
        let all = eventually(Duration::from_secs(5), || async {
            seen.lock().unwrap().items == items(&["a", "b", "c"])
        })
        .await;
        let seen = seen.lock().unwrap();
        assert!(all, "{seen:?}");
        assert_eq!(seen.loads.len(), 1, "one load, then events: {seen:?}");
        assert!(feed.revision() >= 3);
    }
}
