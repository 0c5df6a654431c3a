//! Sentinel mode: the current primary, found through the Sentinels, checked
//! with `ROLE`, and swapped when they name another one (polled, on a failed
//! command, and on `+switch-master`).

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, RedisError, RedisResult,
    aio::MultiplexedConnection,
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
};
use tokio::sync::Notify;

/// The primary a Sentinel-mode handle talks to now. Its connection does
/// not reconnect by itself: only the follower connects, to a node it has
/// just seen answer `ROLE` as master, so no command ever lands on a node
/// that came back at the old address as an (empty) replica.
pub(super) struct Primary {
    pub(super) client: Client,
    pub(super) conn: MultiplexedConnection,
    pub(super) addr: String,
}

/// Sentinel mode: the current primary, swapped by the follower task when
/// the Sentinels name another one.
pub(super) struct Follower {
    pub(super) current: ArcSwapOption<Primary>,
    /// Wakes the follower task at once: a command failed (the primary may
    /// be gone), or a Sentinel announced `+switch-master`.
    pub(super) wake: Arc<Notify>,
    /// Told each time a primary is installed, so a command issued before
    /// the first one was known can wait for it (see [`Follower::primary`]).
    pub(super) found: Notify,
}

impl Follower {
    /// The current primary, waiting up to `within` for the first one: right
    /// after start the Sentinels have not been asked yet, and a request
    /// that comes in then should wait a moment rather than get a 503.
    pub(super) async fn primary(&self, within: Duration) -> Option<Arc<Primary>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self.found.notified();
            tokio::pin!(found);
            // Registered before the check, so an install in between is not missed.
            found.as_mut().enable();
            if let Some(primary) = self.current.load_full() {
                return Some(primary);
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, found).await.is_err() {
                return None;
            }
        }
    }
}

/// A connection to `client`'s node, checked to be the primary (`ROLE`).
async fn connect_primary(client: &Client, timeout: Duration) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let connect = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        is_master(&mut conn).await?;
        Ok(conn)
    };
    match tokio::time::timeout(timeout.saturating_mul(2), connect).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to the Redis primary timed out",
        ))),
    }
}

/// Fails unless the node behind `conn` is a primary (`ROLE` → `master`):
/// a node that came back at the old address as a replica is refused.
pub(super) async fn is_master(conn: &mut MultiplexedConnection) -> RedisResult<()> {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await?;
    match role.first() {
        Some(redis::Value::BulkString(kind)) if kind.as_slice() == b"master" => Ok(()),
        Some(redis::Value::SimpleString(kind)) if kind == "master" => Ok(()),
        _ => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the node is not (or no longer) the Redis primary",
        ))),
    }
}

/// How often the follower asks the Sentinels while the primary answers
/// (a missed `+switch-master` is noticed within this)…
const SENTINEL_POLL: Duration = Duration::from_secs(5);
/// …and while it does not (a failover in progress).
const SENTINEL_RETRY: Duration = Duration::from_millis(200);

/// Sentinel mode: find the primary, and again whenever woken (a command
/// failed, a Sentinel announced `+switch-master`) or every
/// [`SENTINEL_POLL`]; swap the handle's connection when it moved. The
/// driver checks that the named node calls itself master (`ROLE`) before
/// returning it. Ends when the last handle is dropped.
pub(super) async fn follow_primary(
    follower: Weak<Follower>,
    mut sentinel: Sentinel,
    master: String,
    node: SentinelNodeConnectionInfo,
    timeout: Duration,
) {
    let mut failing = false;
    loop {
        let Some(wake) = follower.upgrade().map(|f| f.wake.clone()) else {
            return;
        };
        let found = tokio::time::timeout(
            timeout.saturating_mul(4),
            sentinel.async_master_for(&master, Some(&node)),
        )
        .await;
        let healthy = match found {
            Ok(Ok(client)) => {
                let Some(current) = follower.upgrade() else {
                    return;
                };
                let addr = client.get_connection_info().addr().to_string();
                let known = current.current.load_full();
                let keep = match &known {
                    Some(primary) if primary.addr == addr => {
                        // Same node: keep the connection while it answers.
                        let mut conn = primary.conn.clone();
                        let ping = redis::cmd("PING");
                        let ping = ping.query_async::<String>(&mut conn);
                        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)))
                    }
                    _ => false,
                };
                if keep {
                    true
                } else {
                    match connect_primary(&client, timeout).await {
                        Ok(conn) => {
                            if known.as_ref().is_none_or(|p| p.addr != addr) {
                                tracing::warn!(%master, primary = %addr, "following the Redis primary the Sentinels name");
                            }
                            current
                                .current
                                .store(Some(Arc::new(Primary { client, conn, addr })));
                            current.found.notify_waiters();
                            true
                        }
                        Err(error) => {
                            if !failing {
                                tracing::warn!(%error, primary = %addr, "cannot connect to the Redis primary yet; retrying");
                            }
                            false
                        }
                    }
                }
            }
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(%error, %master, "no Redis primary from the Sentinels yet; retrying");
                }
                false
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(%master, "the Sentinels did not answer in time; retrying");
                }
                false
            }
        };
        failing = !healthy;
        let pause = if healthy {
            SENTINEL_POLL
        } else {
            SENTINEL_RETRY
        };
        tokio::select! {
            _ = wake.notified() => {
                // Debounce a burst of failed commands into one lookup.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Sentinel mode: subscribe to `+switch-master` on one Sentinel and wake
/// the follower on each announcement (resubscribing after a lost
/// connection). Ends when the last handle is dropped.
pub(super) async fn watch_switches(
    follower: Weak<Follower>,
    sentinel: ConnectionInfo,
    wake: Arc<Notify>,
) {
    use futures_util::StreamExt as _;
    while follower.strong_count() > 0 {
        let subscribed = async {
            let client = Client::open(sentinel.clone())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            RedisResult::Ok(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            let mut messages = pubsub.into_on_message();
            loop {
                match tokio::time::timeout(SENTINEL_POLL, messages.next()).await {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => break,
                    Err(_) if follower.strong_count() == 0 => return,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
